// Package bench_test measures filestorage with a 1 GiB file on each
// backend: upload and download throughput through the service (a separate
// process, so its peak RSS is its own), beside the raw path from the same
// run: the driver's GridFS API straight into the database, and a plain
// file written (and fsynced) and read straight on disk, each in 1 MiB
// pieces. For scale it also reads the raw GridFS file with the service's own
// query (unsorted, streamed), sends the raw disk file over a plain loopback
// TCP socket (sendfile), and moves the bytes through a bare net/http server.
//
//	make bench   # or: go test -run '^$' -bench . ./internal/bench/
package bench_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/filestorage/internal/filestoragetest"
	"github.com/audiomill/audiomill/filestorage/internal/store/gridfs"
	"github.com/audiomill/audiomill/platform/mongoconn"
	"github.com/audiomill/audiomill/platform/testenv"
)

const fileSize = 1 << 30

// pattern yields n bytes repeating a random 4 MiB block: as fast as memory,
// constant in size, not compressible.
type pattern struct {
	block []byte
	left  int64
	off   int
}

func newPattern(n int64) *pattern {
	b := make([]byte, 4<<20)
	r := rand.New(rand.NewChaCha8([32]byte{1}))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return &pattern{block: b, left: n}
}

func (p *pattern) Read(buf []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	n := copy(buf[:min(int64(len(buf)), p.left)], p.block[p.off:])
	p.off = (p.off + n) % len(p.block)
	p.left -= int64(n)
	return n, nil
}

// copyMiB copies src to dst in 1 MiB reads and writes, as the service does.
// (io.CopyBuffer would not: it hands the copy to an *os.File's WriteTo or
// ReadFrom, or to io.Discard's ReadFrom, which read 8 or 32 KiB at a time.)
func copyMiB(dst io.Writer, src io.Reader) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, make([]byte, 1<<20))
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

type figures struct {
	up, down, rawUp, rawDown float64 // MB/s
	// rawStreamDown (GridFS): the raw read with the service's query, its
	// chunks unsorted, streamed as the database finds them.
	rawStreamDown float64
	// tcpDown (disk): the raw file sent with sendfile over a plain TCP
	// socket on loopback and read in 1 MiB pieces: what a network download
	// can reach here, without HTTP.
	tcpDown          float64
	httpUp, httpDown float64 // MB/s of bare HTTP on loopback, for scale
	rssBase, rssPeak int64
}

func (f figures) report(b *testing.B, name string) {
	b.ReportMetric(f.up, "upload-MB/s")
	b.ReportMetric(f.down, "download-MB/s")
	b.ReportMetric(f.rawUp, "raw-upload-MB/s")
	b.ReportMetric(f.rawDown, "raw-download-MB/s")
	b.ReportMetric(100*f.up/f.rawUp, "upload-%-of-raw")
	b.ReportMetric(100*f.down/f.rawDown, "download-%-of-raw")
	if f.rawStreamDown > 0 {
		b.ReportMetric(f.rawStreamDown, "raw-stream-download-MB/s")
		b.ReportMetric(100*f.down/f.rawStreamDown, "download-%-of-raw-stream")
	}
	if f.tcpDown > 0 {
		b.ReportMetric(f.tcpDown, "loopback-tcp-sendfile-MB/s")
		b.ReportMetric(100*f.down/f.tcpDown, "download-%-of-loopback-tcp")
	}
	b.ReportMetric(f.httpUp, "bare-http-upload-MB/s")
	b.ReportMetric(f.httpDown, "bare-http-download-MB/s")
	b.ReportMetric(float64(f.rssPeak)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(f.rssPeak-f.rssBase)/(1<<20), "RSS-growth-MiB")
	b.Logf("%s, 1 GiB: service upload %.0f MB/s, download %.0f MB/s; raw %s upload %.0f MB/s, download %.0f MB/s (%.0f%% / %.0f%% of raw); service RSS %.0f MiB at rest, peak %.0f MiB (growth %.1f MiB)",
		name, f.up, f.down, map[string]string{"gridfs": "driver GridFS", "disk": "disk file"}[name], f.rawUp, f.rawDown,
		100*f.up/f.rawUp, 100*f.down/f.rawDown, float64(f.rssBase)/(1<<20), float64(f.rssPeak)/(1<<20), float64(f.rssPeak-f.rssBase)/(1<<20))
	if f.rawStreamDown > 0 {
		b.Logf("%s, the raw read with the service's own query (chunks unsorted, streamed, 8 MiB batches): %.0f MB/s; the service downloads at %.0f%% of it",
			name, f.rawStreamDown, 100*f.down/f.rawStreamDown)
	}
	if f.tcpDown > 0 {
		b.Logf("%s, for scale: the raw file by sendfile over a plain loopback TCP socket, read in 1 MiB pieces (no HTTP), moves %.0f MB/s; the service downloads at %.0f%% of it",
			name, f.tcpDown, 100*f.down/f.tcpDown)
	}
	b.Logf("%s, for scale: bare net/http on loopback (no storage, no hashing) moves the same bytes at %.0f MB/s up, %.0f MB/s down",
		name, f.httpUp, f.httpDown)
}

func BenchmarkOneGiB(b *testing.B) {
	for _, backend := range []string{"gridfs", "disk"} {
		b.Run(backend, func(b *testing.B) {
			for range b.N {
				f := measureService(b, backend)
				if backend == "gridfs" {
					f.rawUp, f.rawDown, f.rawStreamDown = rawGridFS(b)
				} else {
					f.rawUp, f.rawDown, f.tcpDown = rawDisk(b)
				}
				f.httpUp, f.httpDown = bareHTTP(b)
				f.report(b, backend)
			}
		})
	}
}

// measureService uploads and downloads a 1 GiB file through a filestorage
// process and watches its memory.
func measureService(b *testing.B, backend string) figures {
	dir, err := os.MkdirTemp("", "filestorage-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	p := filestoragetest.StartProcess(b, backend, map[string]string{"FILESTORAGE_DIR": dir})
	c, err := client.New(client.Options{BaseURL: p.URL, Token: client.StaticToken(p.Token(b, "bench", "storage"))})
	if err != nil {
		b.Fatal(err)
	}
	ctx := testenv.Context(b, 30*time.Minute)
	// Warm up (connections, buckets, indexes) before the baseline.
	if _, err := c.Upload(ctx, "bench", "warmup", newPattern(1<<20), client.UploadOptions{Size: 1 << 20}); err != nil {
		b.Fatal(err)
	}
	var f figures
	if f.rssBase, _, err = p.RSS(); err != nil {
		b.Fatal(err)
	}
	if err := p.ResetPeakRSS(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	file, err := c.Upload(ctx, "bench", "big.bin", newPattern(fileSize), client.UploadOptions{Size: fileSize})
	if err != nil {
		b.Fatal(err)
	}
	f.up = mbps(fileSize, time.Since(start))
	_, peakUp, _ := p.RSS()
	if err := p.ResetPeakRSS(); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	d, err := c.Download(ctx, file.ID, client.Range{})
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, d)
	d.Close()
	if err != nil || n != fileSize {
		b.Fatalf("download: %d bytes, %v", n, err)
	}
	f.down = mbps(fileSize, time.Since(start))
	_, peakDown, _ := p.RSS()
	f.rssPeak = max(peakUp, peakDown)
	b.Logf("%s service: upload %.0f MB/s, download %.0f MB/s, RSS %.0f MiB at rest, peak %.0f MiB while uploading, %.0f MiB while downloading",
		backend, f.up, f.down, float64(f.rssBase)/(1<<20), float64(peakUp)/(1<<20), float64(peakDown)/(1<<20))
	return f
}

// rawGridFS writes and reads the same bytes straight through the driver's
// GridFS API (same chunk size as the service), and reads them again with
// the service's query: the chunks by files_id, unsorted.
func rawGridFS(b *testing.B) (up, down, streamDown float64) {
	client, err := mongoconn.Connect(mongoconn.Config{URI: testenv.MongoURI(b), Timeout: 30 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	ctx := testenv.Context(b, 30*time.Minute)
	db := client.Database(fmt.Sprintf("fs_bench_raw_%d", time.Now().UnixNano()))
	defer func() {
		_ = db.Drop(context.Background())
		_ = client.Disconnect(context.Background())
	}()
	bucket := db.GridFSBucket(options.GridFSBucket().SetName("raw").SetChunkSizeBytes(gridfs.DefaultChunkSize))
	start := time.Now()
	id, err := bucket.UploadFromStream(ctx, "big.bin", newPattern(fileSize))
	if err != nil {
		b.Fatal(err)
	}
	up = mbps(fileSize, time.Since(start))
	start = time.Now()
	n, err := bucket.DownloadToStreamByName(ctx, "big.bin", io.Discard)
	if err == nil && n == fileSize {
		down = mbps(fileSize, time.Since(start))
	} else {
		// FerretDB answers the driver's GridFS download query (all chunks,
		// sorted, default batches) with a reply over the wire protocol's size
		// limit. The raw read is then the same query with bounded batches,
		// straight through the driver.
		b.Logf("raw GridFS download through the driver's API failed after %d bytes (%v); raw read = driver cursor over the chunks, sorted, batches of 16", n, err)
		down = readChunks(ctx, b, db, id, true, 16)
	}
	perBatch := int32(gridfs.ReadBatchBytes / gridfs.DefaultChunkSize) // as the service's reader
	return up, down, readChunks(ctx, b, db, id, false, perBatch)
}

// readChunks reads every chunk of the file id through a driver cursor and
// returns the MB/s.
func readChunks(ctx context.Context, b *testing.B, db *mongo.Database, id bson.ObjectID, sorted bool, batch int32) float64 {
	opts := options.Find().SetBatchSize(batch)
	if sorted {
		opts.SetSort(bson.D{{Key: "n", Value: 1}})
	}
	start := time.Now()
	cur, err := db.Collection("raw.chunks").Find(ctx, bson.D{{Key: "files_id", Value: id}}, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer cur.Close(ctx)
	var total int64
	for cur.Next(ctx) {
		var ch struct {
			Data []byte `bson:"data"`
		}
		if err := cur.Decode(&ch); err != nil {
			b.Fatal(err)
		}
		total += int64(len(ch.Data))
	}
	if err := cur.Err(); err != nil || total != fileSize {
		b.Fatalf("raw read: %d bytes, %v", total, err)
	}
	return mbps(fileSize, time.Since(start))
}

// rawDisk writes the same bytes to a plain file (fsynced, as the disk
// backend does) and reads them back, then sends the file over loopback TCP.
func rawDisk(b *testing.B) (up, down, tcpDown float64) {
	f, err := os.CreateTemp("", "filestorage-bench-raw-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	start := time.Now()
	if _, err := copyMiB(f, newPattern(fileSize)); err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		b.Fatal(err)
	}
	up = mbps(fileSize, time.Since(start))
	r, err := os.Open(f.Name())
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	start = time.Now()
	if _, err := copyMiB(io.Discard, r); err != nil {
		b.Fatal(err)
	}
	down = mbps(fileSize, time.Since(start))
	return up, down, sendfileOverTCP(b, r)
}

// sendfileOverTCP sends f from its start over a loopback TCP connection
// (io.Copy from the file to the socket: sendfile) and reads it on the other
// end in 1 MiB pieces.
func sendfileOverTCP(b *testing.B, f *os.File) float64 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	sent := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			if _, err = f.Seek(0, io.SeekStart); err == nil {
				_, err = io.Copy(c, f)
			}
			err = errors.Join(err, c.Close())
		}
		sent <- err
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	n, err := copyMiB(io.Discard, c)
	d := time.Since(start)
	if err := errors.Join(err, <-sent); err != nil || n != fileSize {
		b.Fatalf("sendfile over TCP: %d bytes, %v", n, err)
	}
	return mbps(fileSize, d)
}

// bareHTTP moves the same bytes through a do-nothing net/http server on
// loopback: the most any HTTP service can reach on this machine.
func bareHTTP(b *testing.B) (up, down float64) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			_, _ = copyMiB(io.Discard, r.Body)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(fileSize))
		_, _ = copyMiB(w, newPattern(fileSize))
	}))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPut, srv.URL, newPattern(fileSize))
	if err != nil {
		b.Fatal(err)
	}
	req.ContentLength = fileSize
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	up = mbps(fileSize, time.Since(start))
	start = time.Now()
	resp, err = http.Get(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = copyMiB(io.Discard, resp.Body)
	resp.Body.Close()
	return up, mbps(fileSize, time.Since(start))
}
