package storage_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/gateway/internal/gatewaytest"
	"github.com/audiomill/audiomill/gateway/internal/storage"
	"github.com/audiomill/audiomill/platform/authn"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

var bins gatewaytest.Binaries

func TestMain(m *testing.M) {
	os.Exit(testenv.MainInTempDir(m, "storagetest-bin-", func(dir string) error {
		bins.Dir = dir
		return nil
	}))
}

// The gateway asks auth for exactly the scopes the stack's account has
// (scripts/service-accounts).
func TestScopeIsTheStacksAccount(t *testing.T) {
	want := testenv.ServiceAccountScope(t, "gateway")
	if got := storage.Scope(); strings.Join(strings.Fields(got), " ") != want {
		t.Fatalf("storage.Scope = %q, scripts/service-accounts gives the gateway %q", got, want)
	}
}

// The gateway's token (the stack's account, as the gateway asks for it)
// stores, sees and deletes videos for their owner, reads and deletes MP3s,
// and nothing else: it cannot store an MP3, or read or list another bucket.
func TestGatewayTokenIsLeastPrivilege(t *testing.T) {
	deps := gatewaytest.StartDeps(t, &bins)
	clientFor := func(id, secret, scope string) *client.Client {
		tokens, err := authn.NewTokenSource(authn.TokenSourceOptions{ClientID: id, ClientSecret: secret, BaseURL: deps.AuthURL, Scope: scope})
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.New(client.Options{BaseURL: deps.FilesURL, Token: tokens.Token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	gw := clientFor("gateway", gatewaytest.ClientSecret, storage.Scope())
	conv := clientFor("converter", gatewaytest.ConverterSecret, "")
	ctx := testenv.Context(t, 30*time.Second)
	owner := "user-" + deps.ID

	// Its job.
	s := storage.New(gw)
	video, err := s.Upload(ctx, storage.VideoBucket, owner+"/v", owner, strings.NewReader("video"), "video/mp4", nil)
	if err != nil || video.Owner != owner {
		t.Fatalf("store the video = %+v, %v", video, err)
	}
	mp3, err := conv.Upload(ctx, storage.AudioBucket, owner+"/j.mp3", strings.NewReader("mp3"), client.UploadOptions{Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	if f, err := s.Stat(ctx, mp3.ID); err != nil || f.Owner != owner {
		t.Fatalf("stat the MP3 = %+v, %v", f, err)
	}

	refused := func(what string, err error, code errs.Code) {
		t.Helper()
		var se *client.StatusError
		if !errors.As(err, &se) || errs.CodeOf(err) != code {
			t.Fatalf("%s = %v, want %s from filestorage", what, err, code)
		}
	}
	_, err = gw.Upload(ctx, storage.AudioBucket, owner+"/forged.mp3", strings.NewReader("x"), client.UploadOptions{Owner: owner})
	refused("store an MP3", err, errs.Forbidden)
	// It sees a stored video (a resumable upload's recovery), and nothing
	// of the other buckets.
	if f, err := gw.StatPath(ctx, storage.VideoBucket, owner+"/v"); err != nil || f.ID != video.ID {
		t.Fatalf("stat a video by path = %+v, %v", f, err)
	}
	_, err = gw.StatPath(ctx, "docs", owner+"/v")
	refused("read another bucket", err, errs.Forbidden)
	listed := errors.New("nothing listed")
	for _, err := range gw.List(ctx, "docs", client.ListOptions{}) {
		listed = err
		break
	}
	refused("list another bucket", listed, errs.Forbidden)
	_, err = gw.Upload(ctx, "docs", owner+"/x", strings.NewReader("x"), client.UploadOptions{Owner: owner})
	refused("store into another bucket", err, errs.Forbidden)

	// And it deletes both with their job.
	if err := s.Delete(ctx, mp3.ID); err != nil {
		t.Fatalf("delete the MP3: %v", err)
	}
	if err := s.Delete(ctx, video.ID); err != nil {
		t.Fatalf("delete the video: %v", err)
	}
	if _, err := conv.Stat(ctx, video.ID); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("the video after its delete: %v", err)
	}
}
