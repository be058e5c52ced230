package e2e_test

// docs/configuration.md against the code: every environment variable the
// code reads is documented there, and every variable documented there is
// read by something. Nothing needs to run; the test reads the sources.
//
// What counts as a read:
//   - Go: a call, with the variable's name as a string literal (or a string
//     constant of the package), of os.Getenv, os.LookupEnv, a method of
//     platform/config.Reader, or any function that passes one of its own
//     parameters on as the name to one of those (found by following the
//     calls, so config.Reader wrappers and small env(name, def) helpers
//     count under whatever name they have). In _test.go files only reads
//     that reach os.Getenv or os.LookupEnv count: tests build Readers over
//     maps of made-up names. A call of broker.ReadConsumerConfig with a
//     literal prefix reads broker.ConsumerVariables of it. Example_test.go
//     files are documentation (an example app's own variables): not read.
//   - consul-template: env "NAME" in nginx/*.ctmpl.
//   - shell (every *.sh, and every executable whose #! line ends in sh):
//     $NAME or ${NAME…} outside comment lines, and ${x^^}_SUFFIX (lib.sh's
//     per-service override), which reads PREFIX_SUFFIX for each documented
//     PREFIX_SUFFIX whose prefix, in lower case, the script names. Shell
//     reads only prove that a documented variable is read: scripts also pass
//     settings to each other (EDGE_PREFIX, …), which are not configuration.
//
// What counts as documented: every `NAME` in the first cell of a table row
// of docs/configuration.md.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/audiomill/audiomill/platform/broker"
)

const configurationDoc = "docs/configuration.md"

// notConfiguration: variables the code reads that are not audiomill's
// configuration.
var notConfiguration = map[string]string{
	"PATH":                         "the system's; the compose tests find nginx and consul-template on it",
	"AUDIOMILL_SERVICE_TEST_CHILD": "platform/service's tests run the test binary as a child service and tell it so",
	"TEST_SERVICE_NAME":            "platform/service's tests name that child service",
}

// readByLibraries: documented variables read by a library, not by our code.
var readByLibraries = map[string]string{
	"PGPASSWORD": "libpq's variable, read by pgx when DATABASE_URL carries no password",
}

var envName = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$`)

func TestConfigurationDocumentsEveryVariable(t *testing.T) {
	root := repoRoot(t)
	documented := documentedVariables(t, root)
	goReads := goEnvReads(t, root)
	if len(goReads) < 50 {
		t.Fatalf("found only %d variables read by the Go code; the scan is broken: %v", len(goReads), sortedKeys(goReads))
	}
	templateReads := templateEnvReads(t, root)
	if len(templateReads) == 0 {
		t.Fatal("found no env \"NAME\" in nginx/*.ctmpl; the scan is broken")
	}

	for name, where := range goReads {
		if _, ok := notConfiguration[name]; ok || documented[name] {
			continue
		}
		t.Errorf("%s is read by %s but not documented in %s", name, strings.Join(where, ", "), configurationDoc)
	}
	for name, where := range templateReads {
		if !documented[name] {
			t.Errorf("%s is read by %s but not documented in %s", name, strings.Join(where, ", "), configurationDoc)
		}
	}
	shellReads := shellEnvReads(t, root, documented)
	for name := range documented {
		_, byGo := goReads[name]
		_, byTemplate := templateReads[name]
		_, byLibrary := readByLibraries[name]
		if !byGo && !byTemplate && !byLibrary && !shellReads[name] {
			t.Errorf("%s is documented in %s but nothing reads it (Go, nginx/*.ctmpl, scripts)", name, configurationDoc)
		}
	}
	for name := range notConfiguration {
		if documented[name] {
			t.Errorf("%s is documented in %s but listed in notConfiguration", name, configurationDoc)
		}
	}
}

// documentedVariables: the names in the first cell of every table row of
// docs/configuration.md.
func documentedVariables(t *testing.T, root string) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, configurationDoc))
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	vars := map[string]bool{}
	for line := range strings.Lines(string(src)) {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "|") || len(cells) < 3 {
			continue
		}
		for _, m := range names.FindAllStringSubmatch(cells[1], -1) {
			vars[m[1]] = true
		}
	}
	if len(vars) == 0 {
		t.Fatalf("%s: no variable in any table", configurationDoc)
	}
	return vars
}

// skipDir: directories that hold no source of ours.
func skipDir(root, path string, d fs.DirEntry) bool {
	name := d.Name()
	return path != root && (strings.HasPrefix(name, ".") && name != ".ci" ||
		name == "var" || name == "node_modules" || name == "testdata" || name == "secrets")
}

// goPackage: the parsed files of one directory.
type goPackage struct {
	dir    string
	files  map[string]*ast.File // path relative to the root → file
	consts map[string]string    // string constants declared in the package
}

// reader: a function that reads the variable named by its argument arg.
// direct: the read reaches os.Getenv or os.LookupEnv (not a config.Reader,
// which tests build over maps).
type reader struct {
	arg    int
	direct bool
}

// goEnvReads: every variable the Go code reads → where.
func goEnvReads(t *testing.T, root string) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	pkgs := map[string]*goPackage{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDir(root, path, d) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		dir := filepath.Dir(rel)
		p := pkgs[dir]
		if p == nil {
			p = &goPackage{dir: dir, files: map[string]*ast.File{}, consts: map[string]string{}}
			pkgs[dir] = p
		}
		p.files[rel] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		for _, f := range p.files {
			ast.Inspect(f, func(n ast.Node) bool {
				if spec, ok := n.(*ast.ValueSpec); ok {
					for i, name := range spec.Names {
						if i < len(spec.Values) {
							if s, ok := stringLit(spec.Values[i]); ok {
								p.consts[name.Name] = s
							}
						}
					}
				}
				return true
			})
		}
	}

	// Readers: calls are matched by name (methods and functions of other
	// packages by their selector name, the package's own functions by
	// directory and name), which is enough for the few names involved.
	methods := map[string]reader{}          // selector name → reader
	funcs := map[string]map[string]reader{} // dir → function name → reader
	configPkg := pkgs[filepath.Join("platform", "config")]
	if configPkg == nil {
		t.Fatal("no platform/config package")
	}
	for _, f := range configPkg.files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || recvName(fn) != "Reader" {
				continue
			}
			if i := paramIndex(fn, "name"); i >= 0 {
				methods[fn.Name.Name] = reader{arg: i}
			}
		}
	}
	if _, ok := methods["String"]; !ok {
		t.Fatalf("platform/config: no Reader method taking a variable's name (found %v)", sortedKeys(methods))
	}
	lookup := func(dir string, fun ast.Expr) (reader, bool) {
		switch fun := fun.(type) {
		case *ast.SelectorExpr:
			if x, ok := fun.X.(*ast.Ident); ok && x.Name == "os" && (fun.Sel.Name == "Getenv" || fun.Sel.Name == "LookupEnv") {
				return reader{arg: 0, direct: true}, true
			}
			r, ok := methods[fun.Sel.Name]
			return r, ok
		case *ast.Ident:
			r, ok := funcs[dir][fun.Name]
			return r, ok
		}
		return reader{}, false
	}

	// Follow the calls until no new reader appears.
	for changed := true; changed; {
		changed = false
		for _, p := range pkgs {
			for _, f := range p.files {
				for _, decl := range f.Decls {
					fn, ok := decl.(*ast.FuncDecl)
					if !ok || fn.Body == nil {
						continue
					}
					ast.Inspect(fn.Body, func(n ast.Node) bool {
						call, ok := n.(*ast.CallExpr)
						if !ok {
							return true
						}
						r, ok := lookup(p.dir, call.Fun)
						if !ok || r.arg >= len(call.Args) {
							return true
						}
						arg, ok := call.Args[r.arg].(*ast.Ident)
						if !ok {
							return true
						}
						i := paramIndex(fn, arg.Name)
						if i < 0 {
							return true
						}
						found := reader{arg: i, direct: r.direct}
						if fn.Recv != nil {
							if old, ok := methods[fn.Name.Name]; !ok || (found.direct && !old.direct) {
								methods[fn.Name.Name] = found
								changed = true
							}
						} else {
							if funcs[p.dir] == nil {
								funcs[p.dir] = map[string]reader{}
							}
							if old, ok := funcs[p.dir][fn.Name.Name]; !ok || (found.direct && !old.direct) {
								funcs[p.dir][fn.Name.Name] = found
								changed = true
							}
						}
						return true
					})
				}
			}
		}
	}

	reads := map[string][]string{}
	for _, p := range pkgs {
		for rel, f := range p.files {
			test := strings.HasSuffix(rel, "_test.go")
			if filepath.Base(rel) == "example_test.go" {
				continue
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if names, ok := consumerConfigReads(call); ok && !test {
					where := rel + ":" + strconv.Itoa(fset.Position(call.Pos()).Line)
					for _, name := range names {
						reads[name] = append(reads[name], where)
					}
					return true
				}
				r, ok := lookup(p.dir, call.Fun)
				if !ok || r.arg >= len(call.Args) || (test && !r.direct) {
					return true
				}
				name, ok := stringLit(call.Args[r.arg])
				if id, isIdent := call.Args[r.arg].(*ast.Ident); !ok && isIdent {
					name, ok = p.consts[id.Name]
				}
				if ok && envName.MatchString(name) {
					where := rel + ":" + strconv.Itoa(fset.Position(call.Pos()).Line)
					reads[name] = append(reads[name], where)
				}
				return true
			})
		}
	}
	return reads
}

// consumerConfigReads: the variables a call of broker.ReadConsumerConfig
// with a literal prefix reads (its names are built from the prefix, which
// following parameters cannot see), as broker.ConsumerVariables says.
func consumerConfigReads(call *ast.CallExpr) ([]string, bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "ReadConsumerConfig" || len(call.Args) != 3 {
		return nil, false
	}
	prefix, ok := stringLit(call.Args[1])
	if !ok {
		return nil, false
	}
	var def broker.ConsumerDefaults
	if lit, ok := call.Args[2].(*ast.CompositeLit); ok {
		for _, e := range lit.Elts {
			if kv, ok := e.(*ast.KeyValueExpr); ok {
				if key, ok := kv.Key.(*ast.Ident); ok && key.Name == "PrefetchPerSlot" {
					if n, ok := kv.Value.(*ast.BasicLit); ok {
						def.PrefetchPerSlot, _ = strconv.Atoi(n.Value)
					}
				}
			}
		}
	}
	return broker.ConsumerVariables(prefix, def), true
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// recvName: the type name of a method's receiver (Reader for *Reader).
func recvName(fn *ast.FuncDecl) string {
	typ := fn.Recv.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// paramIndex: the position of the parameter called name, or -1.
func paramIndex(fn *ast.FuncDecl, name string) int {
	i := 0
	for _, field := range fn.Type.Params.List {
		if len(field.Names) == 0 {
			i++
			continue
		}
		for _, n := range field.Names {
			if n.Name == name {
				return i
			}
			i++
		}
	}
	return -1
}

// templateEnvReads: every env "NAME" in nginx/*.ctmpl → the files.
func templateEnvReads(t *testing.T, root string) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "nginx", "*.ctmpl"))
	if err != nil {
		t.Fatal(err)
	}
	reads := map[string][]string{}
	re := regexp.MustCompile(`\benv\s+"([A-Z][A-Z0-9_]*)"`)
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, path)
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			if !slices.Contains(reads[m[1]], rel) {
				reads[m[1]] = append(reads[m[1]], rel)
			}
		}
	}
	return reads
}

// shellEnvReads: the variables of documented that a shell script reads.
func shellEnvReads(t *testing.T, root string, documented map[string]bool) map[string]bool {
	t.Helper()
	ref := regexp.MustCompile(`\$\{?([A-Z][A-Z0-9_]*)`)
	perService := regexp.MustCompile(`\$\{[a-z_]+\^\^\}(_[A-Z0-9_]+)`)
	reads := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDir(root, path, d) {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		script := strings.HasSuffix(path, ".sh")
		if !script && (strings.Contains(d.Name(), ".") || info.Mode()&0o111 == 0) {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if first, _, _ := strings.Cut(string(src), "\n"); !script && !(strings.HasPrefix(first, "#!") && strings.HasSuffix(first, "sh")) {
			return nil
		}
		var code strings.Builder
		for line := range strings.Lines(string(src)) {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				code.WriteString(line)
			}
		}
		for _, m := range ref.FindAllStringSubmatch(code.String(), -1) {
			reads[m[1]] = true
		}
		words := regexp.MustCompile(`[a-z]+`).FindAllString(code.String(), -1)
		for _, m := range perService.FindAllStringSubmatch(code.String(), -1) {
			for name := range documented {
				prefix, ok := strings.CutSuffix(name, m[1])
				if ok && prefix != "" && slices.Contains(words, strings.ToLower(prefix)) {
					reads[name] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return reads
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
