package realtime

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const modulePath = "github.com/realtimehub/realtime"

// Size limits of non-test code: a file or a function past them holds more
// than one concern.
const (
	maxFileLines = 450
	maxFuncLines = 100
)

// sourceFile is one parsed non-test Go file of the module.
type sourceFile struct {
	dir  string // relative to the module root, "." for the root package
	path string
	fset *token.FileSet
	ast  *ast.File
}

func moduleFiles(t *testing.T) []sourceFile {
	t.Helper()
	var files []sourceFile
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "out") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		files = append(files, sourceFile{dir: filepath.Dir(path), path: path, fset: fset, ast: f})
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return files
}

// The layout the design asks for: leaves and internal packages never import
// the root package; every program lives under cmd/ or loadtest/.
func TestLayoutImports(t *testing.T) {
	for _, f := range moduleFiles(t) {
		top := strings.Split(f.dir, string(filepath.Separator))[0]
		for _, imp := range f.ast.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p != modulePath {
				continue
			}
			switch top {
			case "internal", "shard", "netpoll", "broadcast":
				t.Errorf("%s imports the root package: %s/ must not", f.path, top)
			}
		}
		if f.ast.Name.Name == "main" && top != "cmd" && top != "loadtest" {
			t.Errorf("%s is a package main outside cmd/ and loadtest/", f.path)
		}
	}
}

// No non-test file over maxFileLines lines, no function over maxFuncLines.
func TestLayoutSizes(t *testing.T) {
	for _, f := range moduleFiles(t) {
		lines := f.fset.File(f.ast.Pos()).LineCount()
		assert.LessOrEqual(t, lines, maxFileLines, "%s: lines", f.path)
		for _, d := range f.ast.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			n := f.fset.Position(fn.End()).Line - f.fset.Position(fn.Pos()).Line + 1
			assert.LessOrEqual(t, n, maxFuncLines, "%s: func %s: lines", f.path, fn.Name.Name)
		}
	}
}

// The root package's exported errors are declared in errors.go, nowhere else.
func TestLayoutErrorsInOneFile(t *testing.T) {
	found := 0
	for _, f := range moduleFiles(t) {
		if f.dir != "." {
			continue
		}
		for _, d := range f.ast.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				for _, name := range s.(*ast.ValueSpec).Names {
					if strings.HasPrefix(name.Name, "Err") {
						found++
						assert.Equal(t, "errors.go", f.path, "%s is declared outside errors.go", name.Name)
					}
				}
			}
		}
	}
	assert.Positive(t, found)
}
