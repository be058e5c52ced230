package app

import (
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/internal/store/gridfs"
	"github.com/audiomill/audiomill/filestorage/internal/web"
	"github.com/audiomill/audiomill/platform/config"
)

func TestReadConfigReconcileEvery(t *testing.T) {
	read := func(env map[string]string) (Config, error) {
		r := config.NewReader(func(k string) string { return env[k] })
		c := ReadConfig(r)
		return c, r.Err()
	}
	if c, err := read(nil); err != nil || c.ReconcileEvery != gridfs.DefaultReconcileEvery {
		t.Fatalf("default = %s, %v", c.ReconcileEvery, err)
	}
	if c, err := read(map[string]string{"FILESTORAGE_RECONCILE_EVERY": "0"}); err != nil || c.ReconcileEvery != 0 {
		t.Fatalf("0 = %s, %v", c.ReconcileEvery, err)
	}
	if c, err := read(map[string]string{"FILESTORAGE_RECONCILE_EVERY": "10s"}); err != nil || c.ReconcileEvery != 10*time.Second {
		t.Fatalf("10s = %s, %v", c.ReconcileEvery, err)
	}
	for _, bad := range []string{"-1s", "soon"} {
		if _, err := read(map[string]string{"FILESTORAGE_RECONCILE_EVERY": bad}); err == nil || !strings.Contains(err.Error(), "FILESTORAGE_RECONCILE_EVERY") {
			t.Fatalf("%q: %v, want an error naming FILESTORAGE_RECONCILE_EVERY", bad, err)
		}
	}
}

func TestReadConfigCache(t *testing.T) {
	read := func(env map[string]string) (Config, error) {
		r := config.NewReader(func(k string) string { return env[k] })
		c := ReadConfig(r)
		return c, r.Err()
	}
	if c, err := read(nil); err != nil || c.CacheBytes != DefaultCacheBytes {
		t.Fatalf("default = %d, %v", c.CacheBytes, err)
	}
	if c, err := read(map[string]string{"FILESTORAGE_CACHE_BYTES": "0", "FILESTORAGE_CACHE_DIR": "/no/such/dir"}); err != nil || c.CacheBytes != 0 {
		t.Fatalf("no cache = %d, %v (the directory of no cache is not checked)", c.CacheBytes, err)
	}
	for name, env := range map[string]map[string]string{
		"FILESTORAGE_CACHE_BYTES": {"FILESTORAGE_CACHE_BYTES": "-1"},
		"FILESTORAGE_CACHE_DIR":   {"FILESTORAGE_CACHE_DIR": "/no/such/dir"},
	} {
		if _, err := read(env); err == nil || !strings.Contains(err.Error(), name) {
			t.Fatalf("%v: %v, want an error naming %s", env, err, name)
		}
	}
}

func TestReadConfigMaxBucketsPerOwner(t *testing.T) {
	read := func(env map[string]string) (Config, error) {
		r := config.NewReader(func(k string) string { return env[k] })
		c := ReadConfig(r)
		return c, r.Err()
	}
	if c, err := read(nil); err != nil || c.MaxBucketsPerOwner != web.DefaultMaxBucketsPerOwner {
		t.Fatalf("default = %d, %v", c.MaxBucketsPerOwner, err)
	}
	if c, err := read(map[string]string{"FILESTORAGE_MAX_BUCKETS_PER_OWNER": "0"}); err != nil || c.MaxBucketsPerOwner != 0 {
		t.Fatalf("0 = %d, %v", c.MaxBucketsPerOwner, err)
	}
	for _, bad := range []string{"-1", "many", "2000000"} {
		if _, err := read(map[string]string{"FILESTORAGE_MAX_BUCKETS_PER_OWNER": bad}); err == nil || !strings.Contains(err.Error(), "FILESTORAGE_MAX_BUCKETS_PER_OWNER") {
			t.Fatalf("%q: %v, want an error naming FILESTORAGE_MAX_BUCKETS_PER_OWNER", bad, err)
		}
	}
}
