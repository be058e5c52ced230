package gridfs

import (
	"context"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// chunkReader reads [pos, end) of a file, querying its chunks in bounded
// batches from the one that holds pos.
type chunkReader struct {
	ctx       context.Context
	coll      *mongo.Collection
	id        bson.ObjectID
	chunkSize int64
	length    int64
	pos, end  int64

	cur   []byte // the rest of the current chunk, from pos
	batch []chunk
}

type chunk struct {
	N    int32  `bson:"n"`
	Data []byte `bson:"data"`
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.pos >= c.end {
		return 0, io.EOF
	}
	if len(c.cur) == 0 {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.cur[:min(int64(len(c.cur)), c.end-c.pos)])
	c.cur = c.cur[n:]
	c.pos += int64(n)
	return n, nil
}

// next loads the chunk holding pos, fetching a new batch when needed.
func (c *chunkReader) next() error {
	n := int32(c.pos / c.chunkSize)
	if len(c.batch) == 0 || c.batch[0].N != n {
		last := int32((c.end - 1) / c.chunkSize)
		count := min(int64(last-n+1), max(1, batchBytes/c.chunkSize))
		cur, err := c.coll.Find(c.ctx,
			bson.D{{Key: "files_id", Value: c.id}, {Key: "n", Value: bson.D{{Key: "$gte", Value: n}, {Key: "$lt", Value: n + int32(count)}}}},
			options.Find().SetSort(bson.D{{Key: "n", Value: 1}}).SetProjection(bson.D{{Key: "n", Value: 1}, {Key: "data", Value: 1}}))
		if err != nil {
			return fmt.Errorf("gridfs: read chunks of %s: %w", c.id.Hex(), err)
		}
		c.batch = c.batch[:0]
		if err := cur.All(c.ctx, &c.batch); err != nil {
			return fmt.Errorf("gridfs: read chunks of %s: %w", c.id.Hex(), err)
		}
		if len(c.batch) == 0 || c.batch[0].N != n {
			return fmt.Errorf("gridfs: file %s is missing chunk %d", c.id.Hex(), n)
		}
	}
	ch := c.batch[0]
	c.batch = c.batch[1:]
	want := min(c.chunkSize, c.length-int64(n)*c.chunkSize)
	if int64(len(ch.Data)) != want {
		return fmt.Errorf("gridfs: chunk %d of %s holds %d bytes, want %d", n, c.id.Hex(), len(ch.Data), want)
	}
	c.cur = ch.Data[c.pos-int64(n)*c.chunkSize:]
	return nil
}

// Close implements io.Closer.
func (c *chunkReader) Close() error {
	c.batch, c.cur = nil, nil
	return nil
}
