package storage

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/httpapi"
	"github.com/audiomill/audiomill/platform/tus"
)

// CreateUpload creates a resumable (tus) upload of length bytes into the
// videos bucket at path, as owner's file (it counts against owner's quota
// from now on), of content type ct and with meta stored beside it.
func (s *Storage) CreateUpload(ctx context.Context, path, owner string, length int64, ct string, meta map[string]string) (client.TusUpload, error) {
	u, err := s.c.CreateUpload(ctx, VideoBucket, path, client.TusCreateOptions{Length: length, ContentType: ct, Metadata: meta, Owner: owner})
	if err != nil {
		// A 413 (the user's quota, the service's largest file) passes as it is.
		return client.TusUpload{}, refused(err, "create a resumable upload in "+VideoBucket)
	}
	return u, nil
}

// UploadStatus is where owner's resumable upload loc stands. One that is
// gone (expired, terminated, or stored: filestorage forgets an upload once
// its file is stored) is errs.NotFound.
func (s *Storage) UploadStatus(ctx context.Context, loc, owner string) (client.TusUpload, error) {
	u, err := s.c.UploadStatus(ctx, loc, owner)
	if err != nil {
		return client.TusUpload{}, tusRefused(err, "status of an upload")
	}
	return u, nil
}

// AppendUpload streams body (size bytes, -1 unknown) to owner's upload loc
// at offset, with the client's checksum header ("" none). filestorage's
// answers are the client's to see: an offset that is not the upload's is
// errs.Conflict (409), a checksum that does not match the part 460, a part
// appended meanwhile by another request 423, a part past the upload's
// length errs.TooLarge, an upload that is gone errs.NotFound, a malformed
// checksum errs.Invalid.
func (s *Storage) AppendUpload(ctx context.Context, loc, owner string, offset int64, body io.Reader, size int64, checksum string) (client.TusUpload, error) {
	u, err := s.c.AppendUpload(ctx, loc, owner, offset, body, size, checksum)
	if err != nil {
		return client.TusUpload{}, tusRefused(err, "append to an upload")
	}
	return u, nil
}

// TerminateUpload deletes owner's unfinished upload loc; one already gone
// is not an error.
func (s *Storage) TerminateUpload(ctx context.Context, loc, owner string) error {
	if err := s.c.TerminateUpload(ctx, loc, owner); err != nil && errs.CodeOf(err) != errs.NotFound {
		return tusRefused(err, "terminate an upload")
	}
	return nil
}

// StatPath returns the metadata of the video at path; a missing one is
// errs.NotFound.
func (s *Storage) StatPath(ctx context.Context, path string) (client.File, error) {
	f, err := s.c.StatPath(ctx, VideoBucket, path)
	if err != nil {
		return client.File{}, refused(err, "stat "+VideoBucket+"/"+path)
	}
	return f, nil
}

// tusRefused maps filestorage's answer to a request on an upload: the tus
// statuses a client acts on keep their status, the rest is refused's.
func tusRefused(err error, what string) error {
	var se *client.StatusError
	if !errors.As(err, &se) {
		return err
	}
	switch se.Status {
	case http.StatusConflict:
		return errs.Wrap(err, errs.Conflict, "%s", se.Message)
	case http.StatusLocked:
		return httpapi.WithStatus(http.StatusLocked, &errs.Error{Code: errs.Conflict,
			Message: "another request is appending to this upload; retry", Err: err})
	case tus.StatusChecksumMismatch:
		return httpapi.WithStatus(tus.StatusChecksumMismatch, &errs.Error{Code: errs.Invalid,
			Message: "Upload-Checksum does not match the part; it was discarded", Err: err})
	case http.StatusNotFound, http.StatusGone:
		return errs.Wrap(err, errs.NotFound, "the upload is gone (expired, terminated or complete)")
	case http.StatusRequestEntityTooLarge:
		return errs.Wrap(err, errs.TooLarge, "%s", se.Message)
	case http.StatusBadRequest:
		// What the client sent (Upload-Checksum): the gateway's own
		// headers are well-formed.
		return errs.Wrap(err, errs.Invalid, "%s", se.Message)
	}
	return refused(err, what)
}
