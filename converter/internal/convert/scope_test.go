package convert_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/converter/internal/convert"
	"github.com/audiomill/audiomill/converter/internal/convertertest"
	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

// The converter asks auth for exactly the scopes the stack's account has
// (scripts/service-accounts): no more, or its token request fails; no
// fewer, or the account grants what it never uses.
func TestScopeIsTheStacksAccount(t *testing.T) {
	want := strings.Fields(testenv.ServiceAccountScope(t, "converter"))
	got := strings.Fields(convert.Scope(convert.Config{AudioBucket: convert.DefaultAudioBucket}))
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("convert.Scope = %q, scripts/service-accounts gives the converter %q", got, want)
	}
}

// The converter's token (the stack's account, as the converter asks for
// it) reads videos and stores MP3s for their owner, and nothing else: it
// cannot store a video, delete one, touch another bucket, or take another
// owner's MP3 at its path.
func TestConverterTokenIsLeastPrivilege(t *testing.T) {
	e := convertertest.NewEnv(t, &bins)
	tokens, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: e.ClientID, ClientSecret: e.Secret,
		BaseURL: e.AuthURL, Scope: convert.Scope(e.Config())})
	if err != nil {
		t.Fatal(err)
	}
	files, err := client.New(client.Options{BaseURL: e.StorageURL, Token: tokens.Token})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 30*time.Second)
	owner := e.Owner()
	video, err := e.Videos.Upload(ctx, "videos", owner+"/v", strings.NewReader("video"), client.UploadOptions{Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.Videos.Upload(ctx, "videos", "user-other-"+e.ID+"/v", strings.NewReader("other"), client.UploadOptions{Owner: "user-other-" + e.ID})
	if err != nil {
		t.Fatal(err)
	}

	// Its job.
	if _, err := files.Stat(ctx, video.ID); err != nil {
		t.Fatalf("stat the video: %v", err)
	}
	mp3, err := files.Upload(ctx, "audio", owner+"/j.mp3", strings.NewReader("mp3"), client.UploadOptions{Owner: owner})
	if err != nil || mp3.Owner != owner {
		t.Fatalf("store the MP3 = %+v, %v", mp3, err)
	}
	if _, err := files.StatPath(ctx, "audio", owner+"/j.mp3"); err != nil {
		t.Fatalf("stat the MP3: %v", err)
	}

	refused := func(what string, err error, code errs.Code) {
		t.Helper()
		var se *client.StatusError
		if !errors.As(err, &se) || errs.CodeOf(err) != code {
			t.Fatalf("%s = %v, want %s from filestorage", what, err, code)
		}
	}
	_, err = files.Upload(ctx, "videos", owner+"/forged", strings.NewReader("x"), client.UploadOptions{Owner: owner})
	refused("store a video", err, errs.Forbidden)
	refused("delete a video", files.Delete(ctx, other.ID), errs.Forbidden)
	_, err = files.Upload(ctx, "docs", owner+"/x", strings.NewReader("x"), client.UploadOptions{Owner: owner})
	refused("store into another bucket", err, errs.Forbidden)
	_, err = files.StatPath(ctx, "docs", "x")
	refused("read another bucket", err, errs.Forbidden)
	_, err = files.Upload(ctx, "audio", owner+"/j.mp3", strings.NewReader("x"), client.UploadOptions{Owner: "user-other-" + e.ID})
	refused("replace the owner's MP3 for another owner", err, errs.Conflict)
	if _, err := files.Stat(ctx, other.ID); err != nil {
		t.Fatalf("the other owner's video is gone: %v", err)
	}
}
