package convert_test

import (
	"os"
	"testing"

	"github.com/audiomill/audiomill/converter/internal/convertertest"
	"github.com/audiomill/audiomill/platform/testenv"
)

// bins are the services the tests run as processes, built once by TestMain;
// the fixtures the tests share go to its directory too.
var bins convertertest.Binaries

func TestMain(m *testing.M) {
	os.Exit(testenv.MainInTempDir(m, "converter-test-bin-", func(dir string) error {
		bins.Dir = dir
		return bins.Build()
	}))
}
