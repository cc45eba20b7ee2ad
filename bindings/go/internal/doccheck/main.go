// Command doccheck fails on an exported identifier without a doc comment, and on a doc comment
// that names a member that does not exist (`Event.Id` where Event has no Id). It reads the
// packages' source with go/ast alone (no type checking, nothing to download); test.sh runs it
// on the client's packages:
//
//	go run ./internal/doccheck . ./intentkittest
//
// Documented means: a doc comment on the declaration, on its group (`var ( ... )`), or a line
// comment after it. Checked: top-level constants, variables, types and functions; methods of
// exported types; exported fields of exported structs; methods of exported interfaces. Test
// files and generated code are not checked. A reference `T.M` is checked when T is a type of the
// package (an alias is followed into another package of the same module).
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: doccheck DIR...")
		os.Exit(2)
	}
	var problems []string
	for _, dir := range os.Args[1:] {
		p, err := check(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "doccheck:", err)
			os.Exit(2)
		}
		problems = append(problems, p...)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "doccheck: %d problem(s)\n", len(problems))
		os.Exit(1)
	}
}

// pkg is one directory's non-test files.
type pkg struct {
	fset  *token.FileSet
	files []*ast.File
	dir   string
}

func load(dir string) (*pkg, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	p := &pkg{fset: fset, dir: dir}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		if ast.IsGenerated(f) {
			continue
		}
		p.files = append(p.files, f)
	}
	return p, nil
}

// check returns the problems of the package in dir, as "file:line: what".
func check(dir string) ([]string, error) {
	p, err := load(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	report := func(pos token.Pos, format string, args ...any) {
		out = append(out, fmt.Sprintf("%s: %s", p.fset.Position(pos), fmt.Sprintf(format, args...)))
	}
	exportedTypes := map[string]bool{}
	for _, f := range p.files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE {
				for _, s := range g.Specs {
					ts := s.(*ast.TypeSpec)
					exportedTypes[ts.Name.Name] = ts.Name.IsExported()
				}
			}
		}
	}
	for _, f := range p.files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv != nil {
					recv := recvName(d.Recv.List[0].Type)
					if !exportedTypes[recv] {
						continue
					}
					if d.Doc == nil {
						report(d.Pos(), "method %s.%s has no doc comment", recv, d.Name.Name)
					}
				} else if d.Doc == nil {
					report(d.Pos(), "func %s has no doc comment", d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						if s.Doc == nil && s.Comment == nil && d.Doc == nil {
							report(s.Pos(), "type %s has no doc comment", s.Name.Name)
						}
						checkMembers(s, report)
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() && s.Doc == nil && s.Comment == nil && d.Doc == nil {
								report(n.Pos(), "%s %s has no doc comment", d.Tok, n.Name)
							}
						}
					}
				}
			}
		}
	}
	refs, err := p.checkReferences()
	if err != nil {
		return nil, err
	}
	return append(out, refs...), nil
}

func recvName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return recvName(t.X)
	case *ast.IndexExpr:
		return recvName(t.X)
	case *ast.IndexListExpr:
		return recvName(t.X)
	case *ast.Ident:
		return t.Name
	}
	return ""
}

// checkMembers reports undocumented exported fields and interface methods of an exported type.
func checkMembers(s *ast.TypeSpec, report func(token.Pos, string, ...any)) {
	var fields *ast.FieldList
	kind := "field"
	switch t := s.Type.(type) {
	case *ast.StructType:
		fields = t.Fields
	case *ast.InterfaceType:
		fields, kind = t.Methods, "method"
	default:
		return
	}
	for _, f := range fields.List {
		for _, n := range f.Names {
			if n.IsExported() && f.Doc == nil && f.Comment == nil {
				report(n.Pos(), "%s %s.%s has no doc comment", kind, s.Name.Name, n.Name)
			}
		}
	}
}

// ref is `Type.Member` in a comment.
var ref = regexp.MustCompile(`\b([A-Z][A-Za-z0-9_]*)\.([A-Z][A-Za-z0-9_]*)\b`)

// checkReferences reports `T.M` in the package's comments where T is one of its types and M is
// neither a field nor a method of T.
func (p *pkg) checkReferences() ([]string, error) {
	var out []string
	for _, f := range p.files {
		for _, cg := range f.Comments {
			for _, c := range cg.List {
				for _, m := range ref.FindAllStringSubmatch(c.Text, -1) {
					members, known, err := p.members(m[1], 0)
					if err != nil {
						return nil, err
					}
					if known && !slices.Contains(members, m[2]) {
						out = append(out, fmt.Sprintf("%s: %s.%s: %s has no field or method %s",
							p.fset.Position(c.Pos()), m[1], m[2], m[1], m[2]))
					}
				}
			}
		}
	}
	return out, nil
}

// members lists the fields and methods of the type named name in p; known is false when p has
// no such type (the reference is to something else, such as a package).
func (p *pkg) members(name string, depth int) (members []string, known bool, err error) {
	for _, f := range p.files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv != nil && recvName(d.Recv.List[0].Type) == name {
					members = append(members, d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					ts, ok := s.(*ast.TypeSpec)
					if !ok || ts.Name.Name != name {
						continue
					}
					known = true
					if sel, ok := ts.Type.(*ast.SelectorExpr); ok && ts.Assign.IsValid() && depth < 3 {
						// An alias to another package's type: read that package if it is ours.
						other, err := p.imported(f, sel.X.(*ast.Ident).Name)
						if err != nil || other == nil {
							return nil, false, err // outside the module: not checked
						}
						m, k, err := other.members(sel.Sel.Name, depth+1)
						if err != nil || !k {
							return nil, false, err
						}
						members = append(members, m...)
						continue
					}
					switch t := ts.Type.(type) {
					case *ast.StructType:
						for _, fl := range t.Fields.List {
							for _, n := range fl.Names {
								members = append(members, n.Name)
							}
							if len(fl.Names) == 0 {
								members = append(members, recvName(fl.Type))
							}
						}
					case *ast.InterfaceType:
						for _, fl := range t.Methods.List {
							for _, n := range fl.Names {
								members = append(members, n.Name)
							}
						}
					}
				}
			}
		}
	}
	return members, known, nil
}

// imported loads the package file f imports as name, when it is in this module; nil otherwise.
func (p *pkg) imported(f *ast.File, name string) (*pkg, error) {
	root, module, err := moduleOf(p.dir)
	if err != nil {
		return nil, err
	}
	for _, imp := range f.Imports {
		path := strings.Trim(imp.Path.Value, `"`)
		local := filepath.Base(path)
		if imp.Name != nil {
			local = imp.Name.Name
		}
		if local != name {
			continue
		}
		rest, ok := strings.CutPrefix(path, module+"/")
		if !ok {
			return nil, nil
		}
		return loadAll(filepath.Join(root, rest))
	}
	return nil, nil
}

// loadAll is load with generated files kept (an alias may point into generated code).
func loadAll(dir string) (*pkg, error) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	p := &pkg{fset: fset, dir: dir}
	for _, pk := range pkgs {
		for _, f := range pk.Files {
			p.files = append(p.files, f)
		}
	}
	return p, nil
}

// moduleOf finds the go.mod above dir: its directory and module path.
func moduleOf(dir string) (root, module string, err error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if m, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
					return d, strings.TrimSpace(m), nil
				}
			}
			return "", "", fmt.Errorf("%s/go.mod has no module line", d)
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", "", fmt.Errorf("no go.mod above %s", dir)
		}
		d = parent
	}
}
