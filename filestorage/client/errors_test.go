package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/audiomill/audiomill/filestorage/client"
	"github.com/audiomill/audiomill/filestorage/internal/filestoragetest"
	"github.com/audiomill/audiomill/filestorage/internal/store"
	"github.com/audiomill/audiomill/platform/config"
	"github.com/audiomill/audiomill/platform/errs"
	"github.com/audiomill/audiomill/platform/testenv"
)

// The client's File is the service's: the same JSON fields, of the same
// types.
func TestFileMatchesTheService(t *testing.T) {
	fields := func(typ reflect.Type) map[string]reflect.Type {
		m := map[string]reflect.Type{}
		for f := range typ.Fields() {
			m[f.Tag.Get("json")] = f.Type
		}
		return m
	}
	got, want := fields(reflect.TypeFor[client.File]()), fields(reflect.TypeFor[store.File]())
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("client.File fields %v; the service's %v", got, want)
	}
}

// A service that fails, cuts its answer short or cannot be reached is
// errs.Unavailable; an answer without our JSON body keeps its status's code.
func TestErrorCodes(t *testing.T) {
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/files/internal":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":{"code":"internal","message":"internal error"}}`))
		case "/v1/files/proxy":
			http.Error(w, "bad gateway", http.StatusBadGateway)
		case "/v1/files/plain":
			http.Error(w, "gone", http.StatusNotFound)
		case "/v1/files/teapot":
			w.WriteHeader(http.StatusTeapot)
		case "/v1/buckets":
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"buckets":[`))
		}
	}))
	t.Cleanup(broken.Close)
	c, err := client.New(client.Options{BaseURL: broken.URL, Token: client.StaticToken("t")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 30*time.Second)
	for _, tc := range []struct {
		id     string
		code   errs.Code
		status int
	}{
		{"internal", errs.Unavailable, 500},
		{"proxy", errs.Unavailable, 502},
		{"plain", errs.NotFound, 404},
		{"teapot", errs.Internal, 418},
	} {
		t.Run(tc.id, func(t *testing.T) {
			_, err := c.Stat(ctx, tc.id)
			var se *client.StatusError
			if errs.CodeOf(err) != tc.code || !errors.As(err, &se) || se.Status != tc.status {
				t.Fatalf("err = %v; want %s with status %d", err, tc.code, tc.status)
			}
		})
	}
	t.Run("ErrCutShort", func(t *testing.T) {
		if _, err := c.Buckets(ctx); errs.CodeOf(err) != errs.Unavailable {
			t.Fatalf("err = %v; want unavailable", err)
		}
	})
	t.Run("ErrUnreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		down, _ := client.New(client.Options{BaseURL: "http://" + addr, Token: client.StaticToken("t")})
		if _, err := down.Buckets(ctx); errs.CodeOf(err) != errs.Unavailable || errs.MessageOf(err) != "file storage is unavailable" {
			t.Fatalf("err = %v; want unavailable", err)
		}
	})
	t.Run("ErrPicker", func(t *testing.T) {
		// A picker's coded error keeps its code and message; another is
		// errs.Unavailable.
		none := errs.E(errs.Unavailable, "no passing instance of filestorage")
		for _, pickErr := range []error{none, errors.New("no route")} {
			c, _ := client.New(client.Options{Picker: client.PickerFunc(func(context.Context) (string, error) { return "", pickErr }),
				Token: client.StaticToken("t")})
			_, err := c.Buckets(ctx)
			if errs.CodeOf(err) != errs.Unavailable || !errors.Is(err, pickErr) {
				t.Fatalf("err = %v; want unavailable wrapping %v", err, pickErr)
			}
		}
	})
}

// tokens is a TokenSource that counts the refusals it was told of.
type tokens struct {
	token       string
	invalidated int
}

func (s *tokens) Token(context.Context) (string, error) { return s.token, nil }
func (s *tokens) Invalidate()                           { s.invalidated++ }

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want client.Config
		bad  string
	}{
		{"Defaults", nil, client.Config{Service: client.ServiceName}, ""},
		{"URL", map[string]string{"FILESTORAGE_URL": "http://10.0.0.2:8102"}, client.Config{URL: "http://10.0.0.2:8102", Service: client.ServiceName}, ""},
		{"Service", map[string]string{"FILESTORAGE_SERVICE": "files-blue"}, client.Config{Service: "files-blue"}, ""},
		{"ErrURLNotHTTP", map[string]string{"FILESTORAGE_URL": "ftp://x"}, client.Config{}, "FILESTORAGE_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := config.NewReader(func(k string) string { return tc.env[k] })
			got := client.ConfigFromEnv(r)
			if tc.bad != "" {
				var ce *config.Error
				if err := r.Err(); !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("err = %v; want one naming %s", err, tc.bad)
				}
				return
			}
			if err := r.Err(); err != nil || got != tc.want {
				t.Fatalf("config = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// Config.New goes to the fixed URL, or to the picker's; the token source
// is told when its token is refused.
func TestConfigNew(t *testing.T) {
	s := filestoragetest.Start(t, "disk", nil)
	ctx := testenv.Context(t, 30*time.Second)
	good := &tokens{token: s.Token(t, "alice", "storage")}
	picked := 0
	picker := client.PickerFunc(func(context.Context) (string, error) { picked++; return s.URL, nil })

	fixed, err := client.Config{URL: s.URL, Service: client.ServiceName}.New(picker, good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixed.Buckets(ctx); err != nil || picked != 0 {
		t.Fatalf("fixed URL: %v, picked %d times", err, picked)
	}
	found, err := client.Config{Service: client.ServiceName}.New(picker, good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := found.Buckets(ctx); err != nil || picked != 1 {
		t.Fatalf("picked URL: %v, picked %d times", err, picked)
	}
	refused := &tokens{token: "nope"}
	bad, err := client.Config{URL: s.URL}.New(nil, refused)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Buckets(ctx); errs.CodeOf(err) != errs.Unauthorized || refused.invalidated != 1 {
		t.Fatalf("refused token: %v, invalidated %d times", err, refused.invalidated)
	}
	if _, err := (client.Config{}).New(nil, good); err == nil {
		t.Fatal("no URL and no picker: no error")
	}
}
