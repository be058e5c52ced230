package disk_test

import (
	"context"
	"io"
	"testing"

	"github.com/audiomill/audiomill/filestorage/internal/store"
)

// zeros reads n zero bytes.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

// BenchmarkPut measures the disk backend's Put alone, without HTTP: 256 MiB
// hashed (SHA-256), written through a temporary file, fsynced and renamed.
// It shows what of the service's upload time the backend takes.
func BenchmarkPut(b *testing.B) {
	be := newBackend(b, b.TempDir())
	b.SetBytes(256 << 20)
	for i := 0; i < b.N; i++ {
		if _, err := be.Put(context.Background(), store.PutRequest{Bucket: "b", Path: "f", Owner: "o", MaxSize: 1 << 40}, &zeros{256 << 20}); err != nil {
			b.Fatal(err)
		}
	}
}
