package gridfs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/errs"
)

// The folder index. FerretDB 1.24 answers a query quickly only when its
// filter is exactly {_id: …} (every other filter reads the whole
// collection), so paths are resolved and folders listed through
// <bucket>.folders, a collection of one document per folder keyed by the
// folder's path ("" for the top, "a/b/" for a/b): its files (name, id and
// what a listing shows of them) and its sub-folders (name, files below per
// owner). A lookup, a
// listing or a move reads and writes the folders it touches, never the
// bucket. Each folder document changes under a lock (a document in
// locksCollection, whose unique _id makes taking it atomic), because
// FerretDB's updates are not. The files collection stays the standard
// GridFS one; the index is rebuilt from it when a bucket has none (a
// bucket written before it existed). Delete the marker document
// (_id "/index") of <bucket>.folders to have it rebuilt at the next start.

// locksCollection holds the folder locks of every bucket.
const locksCollection = "filestorage_locks"

// indexMarker is the _id of the folders collection's marker document
// ("/…" is no folder's path: a valid path never starts with "/").
const indexMarker = "/index"

// indexVersion is the version of the index this code writes and needs: 2
// added the idempotency records, 3 the bytes of each owner below each
// sub-folder (which answer Usage and Buckets from the top folder). An index
// of an older version is rebuilt.
const indexVersion = 3

// idempotencyPrefix starts the _id of an idempotency record in the folders
// collection: which file an owner's Idempotency-Key made.
const idempotencyPrefix = "/idempotency/"

// idempotencyDoc is an idempotency record.
type idempotencyDoc struct {
	ID   string        `bson:"_id"`
	File bson.ObjectID `bson:"file"`
}

// idempotencyID is the _id of owner's record of key: a digest, so that
// neither part's characters matter.
func idempotencyID(owner, key string) string {
	sum := sha256.Sum256([]byte(owner + "\x00" + key))
	return idempotencyPrefix + hex.EncodeToString(sum[:])
}

// recordIdempotency records d under its owner's Idempotency-Key, if it has
// one. It is written once d is published: a crash before leaves a file that
// a retry with the key uploads again, never a key naming a file not there.
func (b *Backend) recordIdempotency(ctx context.Context, bucket string, d filesDoc) error {
	m := d.Metadata
	if m == nil || m.IdempotencyKey == "" {
		return nil
	}
	id := idempotencyID(m.Owner, m.IdempotencyKey)
	_, err := b.folders(bucket).ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, idempotencyDoc{ID: id, File: d.ID},
		options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("gridfs: record the idempotency key of %s: %w", d.ID.Hex(), err)
	}
	return nil
}

// lockTTL is how long a folder lock lives: one holding it longer has died.
const lockTTL = 30 * time.Second

type folderDoc struct {
	ID    string
	Files []folderFile
	Dirs  []folderDir
}

// folderWire is a folder document as stored: its files and sub-folders
// packed into one binary field (folderBody's BSON). FerretDB turns every
// field of a document into JSON nodes and back: a top folder of 320 users'
// folders took 25 ms to read and 28 ms to replace as arrays of documents,
// 4–6 ms packed. Documents of the unpacked form (written before) read as
// they are and are packed when next written.
type folderWire struct {
	ID     string       `bson:"_id"`
	Packed []byte       `bson:"packed,omitempty"`
	Files  []folderFile `bson:"files,omitempty"`
	Dirs   []folderDir  `bson:"dirs,omitempty"`
}

type folderBody struct {
	Files []folderFile `bson:"files"`
	Dirs  []folderDir  `bson:"dirs"`
}

// MarshalBSON implements bson.Marshaler: the packed form.
func (d folderDoc) MarshalBSON() ([]byte, error) {
	body, err := bson.Marshal(folderBody{Files: d.Files, Dirs: d.Dirs})
	if err != nil {
		return nil, fmt.Errorf("pack folder %q: %w", d.ID, err)
	}
	return bson.Marshal(folderWire{ID: d.ID, Packed: body})
}

// UnmarshalBSON implements bson.Unmarshaler: either form.
func (d *folderDoc) UnmarshalBSON(raw []byte) error {
	var w folderWire
	if err := bson.Unmarshal(raw, &w); err != nil {
		return err
	}
	d.ID, d.Files, d.Dirs = w.ID, w.Files, w.Dirs
	if len(w.Packed) > 0 {
		var body folderBody
		if err := bson.Unmarshal(w.Packed, &body); err != nil {
			return fmt.Errorf("unpack folder %q: %w", w.ID, err)
		}
		d.Files, d.Dirs = body.Files, body.Dirs
	}
	return nil
}

// folderFile is a file of a folder: its name and what a listing shows of
// it, copied from its files document, which never changes but for its
// filename (a file's content and metadata are written once).
type folderFile struct {
	Name        string            `bson:"name"`
	ID          bson.ObjectID     `bson:"id"`
	Owner       string            `bson:"owner"`
	Size        int64             `bson:"size"`
	Created     time.Time         `bson:"created"`
	SHA256      string            `bson:"sha256,omitempty"`
	ContentType string            `bson:"contentType,omitempty"`
	Custom      map[string]string `bson:"custom,omitempty"`
}

// entryOf is the folder entry of the file d under name.
func entryOf(name string, d filesDoc) folderFile {
	f := d.file("")
	return folderFile{Name: name, ID: d.ID, Owner: f.Owner, Size: f.Size, Created: f.Created, SHA256: f.SHA256,
		ContentType: f.ContentType, Custom: f.Custom}
}

// file is the entry as a store.File at path.
func (f folderFile) file(bucket, path string) store.File {
	return store.File{ID: f.ID.Hex(), Bucket: bucket, Path: path, Size: f.Size, Created: f.Created.UTC(), SHA256: f.SHA256,
		Owner: f.Owner, ContentType: f.ContentType, Custom: f.Custom}
}

type folderDir struct {
	Name   string       `bson:"name"`
	Owners []ownerCount `bson:"owners"`
}

type ownerCount struct {
	Owner string `bson:"owner"`
	Files int64  `bson:"files"`
	Bytes int64  `bson:"bytes"`
}

// has reports whether owner ("" for anyone) has files in the sub-folder.
func (d folderDir) has(owner string) bool {
	for _, o := range d.Owners {
		if (owner == "" || o.Owner == owner) && o.Files > 0 {
			return true
		}
	}
	return false
}

func (d *folderDoc) file(name string) (int, bool) {
	return slices.BinarySearchFunc(d.Files, name, func(f folderFile, n string) int { return strings.Compare(f.Name, n) })
}

func (d *folderDoc) dir(name string) (int, bool) {
	return slices.BinarySearchFunc(d.Dirs, name, func(f folderDir, n string) int { return strings.Compare(f.Name, n) })
}

// deltas are changes of per-owner file counts and bytes.
type deltas map[string]delta

type delta struct{ files, bytes int64 }

// add counts files more (fewer when negative) of owner, of bytes in all.
func (d deltas) add(owner string, files, bytes int64) {
	c := d[owner]
	c.files += files
	c.bytes += bytes
	d[owner] = c
	if c == (delta{}) {
		delete(d, owner)
	}
}

// putFile points name at f, returning the entry it replaced. With
// exclusive, an existing name is a conflict; check (when not nil) sees the
// entry f would replace (nil: none) first, and its error changes nothing.
func (d *folderDoc) putFile(f folderFile, exclusive bool, check func(prev *folderFile) error, ds deltas) (*folderFile, error) {
	i, found := d.file(f.Name)
	if !found {
		if check != nil {
			if err := check(nil); err != nil {
				return nil, err
			}
		}
		d.Files = slices.Insert(d.Files, i, f)
		ds.add(f.Owner, 1, f.Size)
		return nil, nil
	}
	if exclusive {
		return nil, errs.E(errs.Conflict, "%s%s already exists", d.ID, f.Name)
	}
	old := d.Files[i]
	if check != nil {
		if err := check(&old); err != nil {
			return nil, err
		}
	}
	d.Files[i] = f
	ds.add(old.Owner, -1, -old.Size)
	ds.add(f.Owner, 1, f.Size)
	return &old, nil
}

// removeFile drops name when it still is the file id.
func (d *folderDoc) removeFile(name string, id bson.ObjectID, ds deltas) bool {
	i, found := d.file(name)
	if !found || d.Files[i].ID != id {
		return false
	}
	ds.add(d.Files[i].Owner, -1, -d.Files[i].Size)
	d.Files = slices.Delete(d.Files, i, i+1)
	return true
}

// countDir applies ds to the sub-folder name, dropping it once it holds
// no file.
func (d *folderDoc) countDir(name string, ds deltas) {
	i, found := d.dir(name)
	if !found {
		d.Dirs = slices.Insert(d.Dirs, i, folderDir{Name: name})
	}
	dir := &d.Dirs[i]
	for owner, n := range ds {
		j, ok := slices.BinarySearchFunc(dir.Owners, owner, func(o ownerCount, s string) int { return strings.Compare(o.Owner, s) })
		if !ok {
			dir.Owners = slices.Insert(dir.Owners, j, ownerCount{Owner: owner})
		}
		dir.Owners[j].Files += n.files
		dir.Owners[j].Bytes += n.bytes
		if dir.Owners[j].Files <= 0 {
			dir.Owners = slices.Delete(dir.Owners, j, j+1)
		}
	}
	if len(dir.Owners) == 0 {
		d.Dirs = slices.Delete(d.Dirs, i, i+1)
	}
}

// splitPath splits a path (or a prefix) into its folder ("" or ending in
// "/") and the rest.
func splitPath(p string) (folder, name string) {
	i := strings.LastIndexByte(p, '/')
	return p[:i+1], p[i+1:]
}

func (b *Backend) folders(bucket string) *mongo.Collection {
	return b.db.Collection(bucket + ".folders")
}
func (b *Backend) locks() *mongo.Collection { return b.db.Collection(locksCollection) }

type lockDoc struct {
	ID    string    `bson:"_id"`
	Until time.Time `bson:"until"`
}

// lock takes the lock key, waiting while another holds it, and returns
// the function that releases it.
func (b *Backend) lock(ctx context.Context, key string) (func(), error) {
	wait := time.Millisecond
	for {
		_, err := b.locks().InsertOne(ctx, lockDoc{ID: key, Until: time.Now().Add(lockTTL)})
		if err == nil {
			return func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				_, _ = b.locks().DeleteOne(ctx, bson.D{{Key: "_id", Value: key}})
			}, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return nil, fmt.Errorf("gridfs: lock %s: %w", key, err)
		}
		var held lockDoc
		err = b.locks().FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&held)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			continue // released meanwhile
		case err != nil:
			return nil, fmt.Errorf("gridfs: lock %s: %w", key, err)
		case time.Now().After(held.Until):
			// Its holder died holding it.
			if _, err := b.locks().DeleteOne(ctx, bson.D{{Key: "_id", Value: key}}); err != nil {
				return nil, fmt.Errorf("gridfs: break the expired lock %s: %w", key, err)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("gridfs: lock %s: %w", key, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// getFolder reads a folder document; a missing one is an empty folder.
func (b *Backend) getFolder(ctx context.Context, bucket, folder string) (folderDoc, bool, error) {
	d := folderDoc{ID: folder}
	err := b.folders(bucket).FindOne(ctx, bson.D{{Key: "_id", Value: folder}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return folderDoc{ID: folder}, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("gridfs: read folder %s/%s: %w", bucket, folder, err)
	}
	return d, true, nil
}

// updateFolder changes a folder document under its lock: fn edits it and
// adds the changes of file counts to ds; an emptied folder is removed.
func (b *Backend) updateFolder(ctx context.Context, bucket, folder string, fn func(*folderDoc) error) error {
	return b.updateFolders(ctx, bucket, []string{folder}, func(docs map[string]*folderDoc) error {
		return fn(docs[folder])
	})
}

// updateFolders changes several folder documents in one step, under the
// locks of them all (taken in the order of their paths, so two such steps
// cannot deadlock): fn edits the documents, keyed by folder, and
// nothing is written when it fails. They are written in the order of
// folders; an emptied folder is removed.
func (b *Backend) updateFolders(ctx context.Context, bucket string, folders []string, fn func(map[string]*folderDoc) error) error {
	byPath := slices.Compact(slices.Sorted(slices.Values(folders)))
	docs := make(map[string]*folderDoc, len(byPath))
	existed := make(map[string]bool, len(byPath))
	for _, folder := range byPath {
		unlock, err := b.lock(ctx, bucket+":"+folder)
		if err != nil {
			return err
		}
		defer unlock()
		d, exists, err := b.getFolder(ctx, bucket, folder)
		if err != nil {
			return err
		}
		docs[folder], existed[folder] = &d, exists
	}
	if err := fn(docs); err != nil {
		return err
	}
	written := map[string]bool{}
	for _, folder := range folders {
		if written[folder] {
			continue
		}
		written[folder] = true
		if err := b.writeFolder(ctx, bucket, docs[folder], existed[folder]); err != nil {
			return err
		}
	}
	return nil
}

// writeFolder stores d (existed: over the document read), or removes it
// when it holds nothing.
func (b *Backend) writeFolder(ctx context.Context, bucket string, d *folderDoc, existed bool) error {
	coll := b.folders(bucket)
	id := bson.D{{Key: "_id", Value: d.ID}}
	var err error
	switch {
	case len(d.Files) == 0 && len(d.Dirs) == 0:
		if existed {
			_, err = coll.DeleteOne(ctx, id)
		}
	case existed:
		_, err = coll.ReplaceOne(ctx, id, d)
	default:
		_, err = coll.InsertOne(ctx, d)
	}
	if err != nil {
		return fmt.Errorf("gridfs: write folder %s/%s: %w", bucket, d.ID, err)
	}
	return nil
}

// propagate applies the file-count changes ds of folder to the folders
// above it, up to the top.
func (b *Backend) propagate(ctx context.Context, bucket, folder string, ds deltas) error {
	for folder != "" && len(ds) > 0 {
		parent, name := splitPath(strings.TrimSuffix(folder, "/"))
		if err := b.updateFolder(ctx, bucket, parent, func(d *folderDoc) error {
			d.countDir(name, ds)
			return nil
		}); err != nil {
			return err
		}
		folder = parent
	}
	return nil
}

// indexPut points path at the file d, returning the entry it replaced;
// check as putFile's.
func (b *Backend) indexPut(ctx context.Context, bucket, path string, d filesDoc, exclusive bool, check func(prev *folderFile) error) (*folderFile, error) {
	folder, name := splitPath(path)
	ds := deltas{}
	var prev *folderFile
	err := b.updateFolder(ctx, bucket, folder, func(fd *folderDoc) error {
		var err error
		prev, err = fd.putFile(entryOf(name, d), exclusive, check, ds)
		return err
	})
	if err != nil {
		return nil, err
	}
	return prev, b.propagate(ctx, bucket, folder, ds)
}

// indexRemove drops path when it still is the file id.
func (b *Backend) indexRemove(ctx context.Context, bucket, path string, id bson.ObjectID) error {
	folder, name := splitPath(path)
	ds := deltas{}
	if err := b.updateFolder(ctx, bucket, folder, func(d *folderDoc) error {
		d.removeFile(name, id, ds)
		return nil
	}); err != nil {
		return err
	}
	return b.propagate(ctx, bucket, folder, ds)
}

// errSourceMoved is indexMove's answer when the path a move is from no
// longer names the file the move read there (replaced or moved meanwhile).
var errSourceMoved = errors.New("the file moved meanwhile")

// indexMove moves the file d from one path to another in one step, under
// the locks of both folders: from must still name d (errSourceMoved
// otherwise), and check sees the entry the new path holds (nil: none)
// first; an error of either changes nothing. It returns the entry the new
// path held, which the move replaced.
func (b *Backend) indexMove(ctx context.Context, bucket, from, to string, d filesDoc, check func(prev *folderFile) error) (*folderFile, error) {
	fromFolder, fromName := splitPath(from)
	toFolder, toName := splitPath(to)
	toDeltas, fromDeltas := deltas{}, deltas{}
	if fromFolder == toFolder {
		fromDeltas = toDeltas
	}
	var prev *folderFile
	// The new path is written first: a move cut short between the two
	// leaves the file at both paths, never at neither.
	err := b.updateFolders(ctx, bucket, []string{toFolder, fromFolder}, func(docs map[string]*folderDoc) error {
		src, dst := docs[fromFolder], docs[toFolder]
		if i, ok := src.file(fromName); !ok || src.Files[i].ID != d.ID {
			return errSourceMoved
		}
		var err error
		if prev, err = dst.putFile(entryOf(toName, d), false, check, toDeltas); err != nil {
			return err
		}
		src.removeFile(fromName, d.ID, fromDeltas)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := b.propagate(ctx, bucket, toFolder, toDeltas); err != nil {
		return prev, err
	}
	if fromFolder != toFolder {
		if err := b.propagate(ctx, bucket, fromFolder, fromDeltas); err != nil {
			return prev, err
		}
	}
	return prev, nil
}

// indexLookup returns the entry of path in the index.
func (b *Backend) indexLookup(ctx context.Context, bucket, path string) (folderFile, bool, error) {
	folder, name := splitPath(path)
	d, _, err := b.getFolder(ctx, bucket, folder)
	if err != nil {
		return folderFile{}, false, err
	}
	i, found := d.file(name)
	if !found {
		return folderFile{}, false, nil
	}
	return d.Files[i], true, nil
}

// ensureFolderIndex builds the folder index of a bucket that has none,
// from its files collection, once per process and bucket. A bucket that
// does not exist has nothing to index (and no folder document).
func (b *Backend) ensureFolderIndex(ctx context.Context, bucket string) error {
	b.mu.Lock()
	done := b.folderIndexed[bucket]
	b.mu.Unlock()
	if done {
		return nil
	}
	// has reports whether the bucket has an index of indexVersion.
	has := func() (bool, error) {
		var marker struct {
			Version int `bson:"version"`
		}
		err := b.folders(bucket).FindOne(ctx, bson.D{{Key: "_id", Value: indexMarker}}).Decode(&marker)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("gridfs: folder index of %s: %w", bucket, err)
		}
		return marker.Version >= indexVersion, nil
	}
	ok, err := has()
	if err == nil && !ok {
		// A bucket that does not exist yet gets its index when it does
		// (its first write), not a folders collection of its own now.
		var exists bool
		if exists, err = b.HasBucket(ctx, bucket); err != nil || !exists {
			return err
		}
		var unlock func()
		if unlock, err = b.lock(ctx, bucket+":"+indexMarker); err != nil {
			return err
		}
		if ok, err = has(); err == nil && !ok {
			err = b.rebuildFolderIndex(ctx, bucket)
		}
		unlock()
	}
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.folderIndexed[bucket] = true
	b.mu.Unlock()
	return nil
}

// rebuildFolderIndex reads every files document of the bucket once and
// writes the folder documents of the newest revision of each path, and the
// idempotency records of the files that carry a key.
func (b *Backend) rebuildFolderIndex(ctx context.Context, bucket string) error {
	newest, err := b.newestRevisions(ctx, bucket)
	if err != nil {
		return err
	}
	records := map[string]filesDoc{}
	for _, d := range newest {
		if m := d.Metadata; m != nil && m.IdempotencyKey != "" {
			id := idempotencyID(m.Owner, m.IdempotencyKey)
			if o, ok := records[id]; !ok || d.UploadDate.After(o.UploadDate) {
				records[id] = d
			}
		}
	}
	folders := map[string]*folderDoc{}
	get := func(f string) *folderDoc {
		if folders[f] == nil {
			folders[f] = &folderDoc{ID: f}
		}
		return folders[f]
	}
	for path, d := range newest {
		folder, name := splitPath(path)
		owner := ""
		if d.Metadata != nil {
			owner = d.Metadata.Owner
		}
		doc := get(folder)
		doc.Files = append(doc.Files, entryOf(name, d))
		for folder != "" {
			parent, dir := splitPath(strings.TrimSuffix(folder, "/"))
			p := get(parent)
			i := slices.IndexFunc(p.Dirs, func(x folderDir) bool { return x.Name == dir })
			if i < 0 {
				p.Dirs = append(p.Dirs, folderDir{Name: dir})
				i = len(p.Dirs) - 1
			}
			j := slices.IndexFunc(p.Dirs[i].Owners, func(o ownerCount) bool { return o.Owner == owner })
			if j < 0 {
				p.Dirs[i].Owners = append(p.Dirs[i].Owners, ownerCount{Owner: owner})
				j = len(p.Dirs[i].Owners) - 1
			}
			p.Dirs[i].Owners[j].Files++
			p.Dirs[i].Owners[j].Bytes += d.Length
			folder = parent
		}
	}
	if _, err := b.folders(bucket).DeleteMany(ctx, bson.D{}); err != nil {
		return fmt.Errorf("gridfs: clear folder index of %s: %w", bucket, err)
	}
	batch := make([]any, 0, 256)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := b.folders(bucket).InsertMany(ctx, batch)
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("gridfs: write folder index of %s: %w", bucket, err)
		}
		return nil
	}
	for _, d := range folders {
		slices.SortFunc(d.Files, func(x, y folderFile) int { return cmp.Compare(x.Name, y.Name) })
		slices.SortFunc(d.Dirs, func(x, y folderDir) int { return cmp.Compare(x.Name, y.Name) })
		for _, dir := range d.Dirs {
			slices.SortFunc(dir.Owners, func(x, y ownerCount) int { return cmp.Compare(x.Owner, y.Owner) })
		}
		batch = append(batch, d)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	for id, d := range records {
		batch = append(batch, idempotencyDoc{ID: id, File: d.ID})
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if _, err := b.folders(bucket).InsertOne(ctx, bson.D{{Key: "_id", Value: indexMarker}, {Key: "version", Value: indexVersion},
		{Key: "built", Value: time.Now().UTC().Truncate(time.Millisecond)}}); err != nil {
		return fmt.Errorf("gridfs: mark folder index of %s: %w", bucket, err)
	}
	return nil
}

// newestRevisions reads every files document of the bucket (on FerretDB,
// the whole collection) and returns the newest revision of each path.
func (b *Backend) newestRevisions(ctx context.Context, bucket string) (map[string]filesDoc, error) {
	cur, err := b.files(bucket).Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("gridfs: read the files of %s: %w", bucket, err)
	}
	var docs []filesDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("gridfs: read the files of %s: %w", bucket, err)
	}
	newest := map[string]filesDoc{}
	for _, d := range docs {
		o, ok := newest[d.Filename]
		if !ok || d.UploadDate.After(o.UploadDate) || d.UploadDate.Equal(o.UploadDate) && d.ID.Hex() > o.ID.Hex() {
			newest[d.Filename] = d
		}
	}
	return newest, nil
}

// reconcileSlack is how far before the previous reconcile's start a file
// may carry its upload date and still be looked at again: clocks of other
// writers differ, and a write may end after the scan that missed it began.
const reconcileSlack = 5 * time.Minute

// reconcile indexes the newest revision of each path of the bucket whose
// file the index does not name, written by another GridFS writer (pymongo,
// mongofiles; never filestorage's own files, which have derived chunk
// _ids), and reports whether it indexed any. It reads the whole files
// collection, so it runs at most once per ReconcileEvery and bucket in this
// process (never when that is negative): a path looked up in between is
// answered by the index alone. After its first run it checks only the files
// uploaded since the one before (less reconcileSlack) against their
// folders; the first run reads every folder document in one query.
func (b *Backend) reconcile(ctx context.Context, bucket string) (bool, error) {
	if b.reconcileEvery < 0 {
		return false, nil
	}
	now := time.Now()
	b.mu.Lock()
	last, ran := b.reconciled[bucket]
	if ran && now.Sub(last) < b.reconcileEvery {
		b.mu.Unlock()
		return false, nil
	}
	b.reconciled[bucket] = now
	b.mu.Unlock()

	newest, err := b.newestRevisions(ctx, bucket)
	if err != nil {
		return false, err
	}
	// By folder: those uploaded since the last run (all, the first time).
	since := last.Add(-reconcileSlack)
	byFolder := map[string]map[string]filesDoc{}
	for path, d := range newest {
		if store.ValidatePath(path) != nil || ran && d.UploadDate.Before(since) {
			continue // a name filestorage cannot serve, or checked before
		}
		if d.derivedChunks() {
			// filestorage's own write, which indexes itself when it
			// commits: one not in the index is in progress or lost its
			// commit (another owner's file took the path), and must not
			// take the path now.
			continue
		}
		folder, name := splitPath(path)
		if byFolder[folder] == nil {
			byFolder[folder] = map[string]filesDoc{}
		}
		byFolder[folder][name] = d
	}
	indexed, err := b.foldersOf(ctx, bucket, byFolder, !ran)
	if err != nil {
		return false, err
	}
	added := false
	for folder, files := range byFolder {
		fd := indexed[folder]
		for name, d := range files {
			if i, ok := fd.file(name); ok && (fd.Files[i].ID == d.ID || !d.UploadDate.After(fd.Files[i].Created)) {
				continue
			}
			if err := b.recordID(ctx, bucket, d.ID); err != nil {
				return added, err
			}
			if _, err := b.indexPut(ctx, bucket, d.Filename, d, false, nil); err != nil {
				return added, err
			}
			added = true
		}
	}
	return added, nil
}

// foldersOf reads the folder documents of the folders named in want: one
// lookup each, or all of them in one query when all.
func (b *Backend) foldersOf(ctx context.Context, bucket string, want map[string]map[string]filesDoc, all bool) (map[string]*folderDoc, error) {
	out := make(map[string]*folderDoc, len(want))
	if !all {
		for folder := range want {
			fd, _, err := b.getFolder(ctx, bucket, folder)
			if err != nil {
				return nil, err
			}
			out[folder] = &fd
		}
		return out, nil
	}
	cur, err := b.folders(bucket).Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("gridfs: read the folders of %s: %w", bucket, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		if id, _ := cur.Current.Lookup("_id").StringValueOK(); strings.HasPrefix(id, "/") {
			continue // the marker, an idempotency record
		}
		var fd folderDoc
		if err := cur.Decode(&fd); err != nil {
			return nil, fmt.Errorf("gridfs: read the folders of %s: %w", bucket, err)
		}
		if _, ok := want[fd.ID]; ok {
			out[fd.ID] = &fd
		}
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("gridfs: read the folders of %s: %w", bucket, err)
	}
	for folder := range want {
		if out[folder] == nil {
			out[folder] = &folderDoc{ID: folder}
		}
	}
	return out, nil
}
