package testenv

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ServiceAccountScope returns the scopes (space-separated) that
// scripts/service-accounts, the one list the stack's accounts come from,
// gives the service account id: harnesses give their accounts the same, so
// a service that needs more than the stack grants fails its tests. It fails
// tb when the file or the account is missing.
func ServiceAccountScope(tb testing.TB, id string) string {
	tb.Helper()
	root, err := repoRoot()
	if err != nil {
		tb.Fatalf("testenv: scripts/service-accounts: %v", err)
	}
	path := filepath.Join(root, "scripts", "service-accounts")
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if fields := strings.Fields(line); len(fields) > 1 && fields[0] == id {
			return strings.Join(fields[1:], " ")
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("testenv: %s: %v", path, err)
	}
	tb.Fatalf("testenv: %s has no account %q with scopes", path, id)
	return ""
}
