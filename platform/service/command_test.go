package service_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/platform/service"
)

func TestRunCommand(t *testing.T) {
	run := func(code int) func(context.Context, func(string) string, io.Writer, io.Writer) int {
		return func(_ context.Context, env func(string) string, out, _ io.Writer) int {
			_, _ = io.WriteString(out, env("WHO"))
			return code
		}
	}
	spec := service.Spec{Name: "auth", Commands: []service.Command{
		{Name: "rotate-keys", Run: run(0)},
		{Name: "migrate-from-mongo", Run: run(1)},
	}}
	env := func(k string) string { return map[string]string{"WHO": "me"}[k] }
	for _, tc := range []struct {
		name, command string
		spec          service.Spec
		code          int
		out, errOut   string
	}{
		{"First", "rotate-keys", spec, 0, "me", ""},
		{"SecondExitCode", "migrate-from-mongo", spec, 1, "me", ""},
		{"ErrUnknown", "rotate", spec, 2, "",
			"auth: unknown command \"rotate\"; want rotate-keys or migrate-from-mongo, or none to run the service\n"},
		{"ErrUnknownOfOne", "x", service.Spec{Name: "gateway", Commands: spec.Commands[1:]}, 2, "",
			"gateway: unknown command \"x\"; want migrate-from-mongo, or none to run the service\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := service.RunCommand(context.Background(), tc.spec, tc.command, env, &out, &errOut)
			if code != tc.code || out.String() != tc.out || errOut.String() != tc.errOut {
				t.Fatalf("code %d, out %q, errOut %q; want %d, %q, %q", code, out.String(), errOut.String(), tc.code, tc.out, tc.errOut)
			}
		})
	}
}
