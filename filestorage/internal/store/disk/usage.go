package disk

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/audiomill/audiomill/filestorage/internal/store"
)

// usageVersion is the version of usage.json this code writes and reads.
const usageVersion = 1

// usageFile is usage.json: each owner's bytes when the process stopped.
type usageFile struct {
	Version int              `json:"version"`
	Used    map[string]int64 `json:"used"`
}

// count adds n bytes (fewer when negative) to owner's counter; b.mu held.
func (b *Backend) count(owner string, n int64) {
	if v := b.used[owner] + n; v != 0 {
		b.used[owner] = v
	} else {
		delete(b.used, owner)
	}
}

// grow has owner's hold h reserve at least need bytes (up to h.Bytes)
// within quota, and returns what it reserves.
func (b *Backend) grow(owner string, h store.Hold, need, quota int64) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	hs, got, err := b.holds[owner].Grow(h, need, b.used[owner], quota)
	if err != nil {
		return got, err
	}
	b.holds[owner] = hs
	return got, nil
}

// release drops owner's hold id.
func (b *Backend) release(owner, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.releaseLocked(owner, id)
}

// releaseLocked is release with b.mu held.
func (b *Backend) releaseLocked(owner, id string) {
	hs, _ := b.holds[owner].Release(id)
	if len(hs) == 0 {
		delete(b.holds, owner)
	} else {
		b.holds[owner] = hs
	}
}

// loadUsage reads the counters the last Close wrote and removes them, so
// that a process that dies leaves none; without them (the first start, a
// crash) it counts every file's metadata once.
func (b *Backend) loadUsage() error {
	data, err := b.root.ReadFile(usageName)
	if err == nil {
		var u usageFile
		if json.Unmarshal(data, &u) == nil && u.Version == usageVersion && u.Used != nil {
			b.used = u.Used
		}
		if err := b.root.Remove(usageName); err != nil {
			return fmt.Errorf("disk: remove %s: %w", usageName, err)
		}
		if err := b.syncDir(sys); err != nil {
			return err
		}
		if u.Version == usageVersion && u.Used != nil {
			return nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk: read %s: %w", usageName, err)
	}
	return b.countFiles()
}

// countFiles sets the counters from the metadata of every file.
func (b *Backend) countFiles() error {
	used := map[string]int64{}
	err := fs.WalkDir(b.root.FS(), metaDir, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		bucket, p, ok := strings.Cut(strings.TrimPrefix(name, metaDir+"/"), "/")
		if !ok || validate(bucket, p) != nil {
			return nil
		}
		m, err := b.readMeta(bucket, p)
		if err != nil {
			return nil // not a file's metadata
		}
		used[m.Owner] += m.Size
		return nil
	})
	if err != nil {
		return fmt.Errorf("disk: count the files' bytes: %w", err)
	}
	for owner, n := range used {
		if n == 0 {
			delete(used, owner)
		}
	}
	b.used = used
	return nil
}

// saveUsage writes the counters for the next start; b.mu held.
func (b *Backend) saveUsage() error {
	data, err := json.Marshal(usageFile{Version: usageVersion, Used: b.used})
	if err != nil {
		return fmt.Errorf("disk: encode usage: %w", err)
	}
	return b.writeAtomic(usageName, data)
}

// loadHolds restores the holds of the resumable uploads in progress. An
// upload whose data is gone has been committed (the process stopped before
// it removed the state): its state is removed.
func (b *Backend) loadHolds() error {
	entries, err := fs.ReadDir(b.root.FS(), upDir)
	if err != nil {
		return fmt.Errorf("disk: list uploads: %w", err)
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		s, err := b.loadState(id)
		if err != nil {
			continue
		}
		if _, err := b.root.Stat(dataName(id)); errors.Is(err, fs.ErrNotExist) {
			_ = b.root.Remove(path.Join(upDir, e.Name()))
			continue
		}
		if s.Reserved > 0 {
			b.holds[s.Owner] = append(b.holds[s.Owner], store.Hold{ID: s.ID, Bytes: s.Reserved})
		}
	}
	return nil
}
