package e2e_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/e2e/stack"
	"github.com/audiomill/audiomill/platform/testenv"
)

// The file-storage API takes tokens with the scope storage or
// storage:admin only: a signed-up user's token is refused until an admin
// grants the user the role storage at auth, and again once it is revoked
// (each time in the user's next token); a service account configured with
// the scope works, one without it does not. auth and filestorage are this
// checkout's binaries, filestorage verifying auth's tokens with its JWKS.
func TestStorageScopeFromAuth(t *testing.T) {
	s := stack.New(t)
	const adminEmail, adminPassword = "admin@example.com", "admin password 1"
	const appSecret, plainSecret = "app-secret-0123456789", "plain-secret-0123456789"
	a := s.Start("auth", "ADMIN_EMAIL="+adminEmail, "ADMIN_PASSWORD="+adminPassword, "BCRYPT_COST=10",
		"SERVICE_CLIENTS=app:"+appSecret+":storage,plain:"+plainSecret+":profile")
	authURL := "http://" + a.Addr
	f := s.Start("filestorage", "FILESTORAGE_BACKEND=disk", "FILESTORAGE_DIR="+t.TempDir(),
		"AUTH_JWKS_URL="+authURL+"/.well-known/jwks.json")
	fsURL := "http://" + f.Addr

	token := func(body string, form bool) string {
		t.Helper()
		ct := "application/json"
		if form {
			ct = "application/x-www-form-urlencoded"
		}
		st, b, _ := call(t, http.MethodPost, authURL+"/v1/token", "", strings.NewReader(body), "Content-Type", ct)
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if st != http.StatusOK || json.Unmarshal(b, &tok) != nil || tok.AccessToken == "" {
			t.Fatalf("token = %d %s", st, b)
		}
		return tok.AccessToken
	}
	login := func(email, password string) string {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"email": email, "password": password})
		return token(string(b), false)
	}
	service := func(id, secret string) string {
		t.Helper()
		return token(url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}.Encode(), true)
	}
	// storage sends a request to filestorage and returns its status and body.
	storage := func(method, path, tok string, body string) (int, string) {
		t.Helper()
		st, b, _ := call(t, method, fsURL+path, tok, strings.NewReader(body))
		return st, string(b)
	}
	refused := func(who, tok string) {
		t.Helper()
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/v1/buckets"},
			{http.MethodPut, "/v1/buckets/notes/files/a.txt"},
		} {
			st, b := storage(r.method, r.path, tok, "x")
			if st != http.StatusForbidden || !strings.Contains(b, `"code":"forbidden"`) || !strings.Contains(b, "scope storage") {
				t.Fatalf("%s: %s %s = %d %s, want 403 forbidden naming the scope", who, r.method, r.path, st, b)
			}
		}
	}
	works := func(who, tok, bucket string) {
		t.Helper()
		if st, b := storage(http.MethodPut, "/v1/buckets/"+bucket+"/files/a.txt", tok, who); st != http.StatusCreated {
			t.Fatalf("%s: upload = %d %s", who, st, b)
		}
		if st, b := storage(http.MethodGet, "/v1/buckets/"+bucket+"/files/a.txt", tok, ""); st != http.StatusOK || b != who {
			t.Fatalf("%s: download = %d %q", who, st, b)
		}
	}

	email := "user@example.com"
	creds, _ := json.Marshal(map[string]string{"email": email, "password": "user password 1"})
	st, b, _ := call(t, http.MethodPost, authURL+"/v1/users", "", strings.NewReader(string(creds)), "Content-Type", "application/json")
	if st != http.StatusAccepted {
		t.Fatalf("sign-up = %d %s", st, b)
	}
	before := login(email, "user password 1")
	acct, err := testenv.UnverifiedClaims(before)
	if err != nil {
		t.Fatal(err)
	}
	acct.ID = acct.Subject
	refused("a signed-up user", before)

	grant := "/v1/users/" + acct.ID + "/roles/storage"
	if st, b, _ := call(t, http.MethodPut, authURL+grant, before, nil); st != http.StatusForbidden {
		t.Fatalf("the user grants themselves storage: %d %s", st, b)
	}
	admin := login(adminEmail, adminPassword)
	if st, b, _ := call(t, http.MethodPut, authURL+grant, admin, nil); st != http.StatusOK || !strings.Contains(string(b), `"storage"`) {
		t.Fatalf("the admin grants storage: %d %s", st, b)
	}
	refused("the user's token from before the grant", before)
	works("user", login(email, "user password 1"), "notes")

	if st, b, _ := call(t, http.MethodDelete, authURL+grant, admin, nil); st != http.StatusOK || strings.Contains(string(b), `"storage"`) {
		t.Fatalf("the admin revokes storage: %d %s", st, b)
	}
	refused("the user after the revoke", login(email, "user password 1"))

	works("app", service("app", appSecret), "app-files")
	refused("a service account without the scope", service("plain", plainSecret))
}
