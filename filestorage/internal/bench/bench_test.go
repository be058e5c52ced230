// Package bench_test measures filestorage with a 1 GiB file on each
// backend: upload and download throughput through the service (a separate
// process, so its peak RSS is its own), beside the raw path from the same
// run: the driver's GridFS API straight into the database, and a plain
// file written (and fsynced) and read straight on disk.
//
//	make bench   # or: go test -run '^$' -bench . ./internal/bench/
package bench_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/filestorage/internal/servicetest"
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

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

type figures struct {
	up, down, rawUp, rawDown float64 // MB/s
	httpUp, httpDown         float64 // MB/s of bare HTTP on loopback, for scale
	rssBase, rssPeak         int64
}

func (f figures) report(b *testing.B, name string) {
	b.ReportMetric(f.up, "upload-MB/s")
	b.ReportMetric(f.down, "download-MB/s")
	b.ReportMetric(f.rawUp, "raw-upload-MB/s")
	b.ReportMetric(f.rawDown, "raw-download-MB/s")
	b.ReportMetric(100*f.up/f.rawUp, "upload-%-of-raw")
	b.ReportMetric(100*f.down/f.rawDown, "download-%-of-raw")
	b.ReportMetric(f.httpUp, "bare-http-upload-MB/s")
	b.ReportMetric(f.httpDown, "bare-http-download-MB/s")
	b.ReportMetric(float64(f.rssPeak)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(f.rssPeak-f.rssBase)/(1<<20), "RSS-growth-MiB")
	b.Logf("%s, 1 GiB: service upload %.0f MB/s, download %.0f MB/s; raw %s upload %.0f MB/s, download %.0f MB/s (%.0f%% / %.0f%% of raw); service RSS %.0f MiB at rest, peak %.0f MiB (growth %.1f MiB)",
		name, f.up, f.down, map[string]string{"gridfs": "driver GridFS", "disk": "disk file"}[name], f.rawUp, f.rawDown,
		100*f.up/f.rawUp, 100*f.down/f.rawDown, float64(f.rssBase)/(1<<20), float64(f.rssPeak)/(1<<20), float64(f.rssPeak-f.rssBase)/(1<<20))
	b.Logf("%s, for scale: bare net/http on loopback (no storage, no hashing) moves the same bytes at %.0f MB/s up, %.0f MB/s down",
		name, f.httpUp, f.httpDown)
}

func BenchmarkOneGiB(b *testing.B) {
	for _, backend := range []string{"gridfs", "disk"} {
		b.Run(backend, func(b *testing.B) {
			for range b.N {
				f := measureService(b, backend)
				if backend == "gridfs" {
					f.rawUp, f.rawDown = rawGridFS(b)
				} else {
					f.rawUp, f.rawDown = rawDisk(b)
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
	p := servicetest.StartProcess(b, backend, map[string]string{"FILESTORAGE_DIR": dir})
	c, err := client.New(client.Options{BaseURL: p.URL, Token: client.StaticToken(p.Token(b, "bench"))})
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
// GridFS API (same chunk size as the service).
func rawGridFS(b *testing.B) (up, down float64) {
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
	if _, err := bucket.UploadFromStream(ctx, "big.bin", newPattern(fileSize)); err != nil {
		b.Fatal(err)
	}
	up = mbps(fileSize, time.Since(start))
	start = time.Now()
	n, err := bucket.DownloadToStreamByName(ctx, "big.bin", io.Discard)
	if err == nil && n == fileSize {
		return up, mbps(fileSize, time.Since(start))
	}
	// FerretDB answers the driver's GridFS download query (all chunks,
	// sorted, default batches) with a reply over the wire protocol's size
	// limit. The raw read is then the same query with bounded batches,
	// straight through the driver.
	b.Logf("raw GridFS download through the driver's API failed after %d bytes (%v); raw read = driver cursor over the chunks, sorted, batches of 16", n, err)
	var d struct {
		ID bson.ObjectID `bson:"_id"`
	}
	if err := db.Collection("raw.files").FindOne(ctx, bson.D{{Key: "filename", Value: "big.bin"}}).Decode(&d); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	cur, err := db.Collection("raw.chunks").Find(ctx, bson.D{{Key: "files_id", Value: d.ID}},
		options.Find().SetSort(bson.D{{Key: "n", Value: 1}}).SetBatchSize(16))
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
	return up, mbps(fileSize, time.Since(start))
}

// rawDisk writes the same bytes to a plain file (fsynced, as the disk
// backend does) and reads them back.
func rawDisk(b *testing.B) (up, down float64) {
	f, err := os.CreateTemp("", "filestorage-bench-raw-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	start := time.Now()
	if _, err := io.CopyBuffer(f, newPattern(fileSize), make([]byte, 1<<20)); err != nil {
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
	if _, err := io.CopyBuffer(io.Discard, r, make([]byte, 1<<20)); err != nil {
		b.Fatal(err)
	}
	return up, mbps(fileSize, time.Since(start))
}

// bareHTTP moves the same bytes through a do-nothing net/http server on
// loopback: the most any HTTP service can reach on this machine.
func bareHTTP(b *testing.B) (up, down float64) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			_, _ = io.CopyBuffer(io.Discard, r.Body, make([]byte, 1<<20))
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(fileSize))
		_, _ = io.CopyBuffer(w, newPattern(fileSize), make([]byte, 1<<20))
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
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return up, mbps(fileSize, time.Since(start))
}
