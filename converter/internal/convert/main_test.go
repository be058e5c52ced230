package convert_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/audiomill/audiomill/converter/internal/convertertest"
)

// bins are the services the tests run as processes, built once by TestMain;
// the fixtures the tests share go to its directory too.
var bins convertertest.Binaries

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "converter-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.Dir = dir
	if err := bins.Build(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
