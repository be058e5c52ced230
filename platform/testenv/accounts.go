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

// RabbitMQPermissions are a service's RabbitMQ permissions (regexes), as
// scripts/rabbitmq-users gives them.
type RabbitMQPermissions struct{ Configure, Write, Read string }

// RabbitMQUser returns the permissions scripts/rabbitmq-users, the one list
// `make up` and compose create the services' users from, gives user; it
// fails tb when the file or the user is missing.
func RabbitMQUser(tb testing.TB, user string) RabbitMQPermissions {
	tb.Helper()
	root, err := repoRoot()
	if err != nil {
		tb.Fatalf("testenv: scripts/rabbitmq-users: %v", err)
	}
	path := filepath.Join(root, "scripts", "rabbitmq-users")
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		line, _, _ = strings.Cut(line, "#")
		if f := strings.Fields(line); len(f) == 4 && f[0] == user {
			return RabbitMQPermissions{Configure: f[1], Write: f[2], Read: f[3]}
		}
	}
	tb.Fatalf("testenv: %s has no user %q with configure, write and read", path, user)
	return RabbitMQPermissions{}
}
