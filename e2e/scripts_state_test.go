package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The local PostgreSQL and its audiomill_auth database belong to the
// machine: every checkout that runs `make up` on it uses them. The KEK that
// seals the signing keys there must therefore be the same for every
// checkout, or a second checkout (a CI clone beside a developer's) starts an
// auth that refuses the keys the first one sealed. Each run below is a
// checkout of its own (its own var/), on one machine (one state directory).
func TestAuthKEKIsTheMachinesNotTheCheckouts(t *testing.T) {
	root := repoRoot(t)
	state := filepath.Join(t.TempDir(), "state")
	kek := func(varDir string) (path, key string) {
		t.Helper()
		out := runLib(t, root, "ensure_auth_kek; auth_kek_file", "AUDIOMILL_VAR_DIR="+varDir, "AUDIOMILL_STATE_DIR="+state)
		path = strings.TrimSpace(string(out))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("the KEK file: %v", err)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatalf("the KEK file: %v", err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %o, want 600", path, mode)
		}
		return path, string(b)
	}

	// A checkout from before, with its KEK in var/data: the machine adopts it,
	// since that is the key its database's signing keys were sealed with.
	old := t.TempDir()
	if err := os.MkdirAll(filepath.Join(old, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	const legacy = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	if err := os.WriteFile(filepath.Join(old, "data", "auth-kek"), []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	path1, key1 := kek(old)
	if key1 != legacy {
		t.Errorf("the first checkout's KEK is %q, want the one it had in var/data (%q)", key1, legacy)
	}
	if !strings.HasPrefix(path1, state+string(filepath.Separator)) {
		t.Errorf("the KEK is at %s, want it under the machine's state directory %s", path1, state)
	}

	// A fresh clone of the repository on the same machine: same KEK.
	path2, key2 := kek(t.TempDir())
	if path2 != path1 || key2 != key1 {
		t.Errorf("a second checkout got the KEK %s (%q), want the machine's %s (%q)", path2, key2, path1, key1)
	}
}
