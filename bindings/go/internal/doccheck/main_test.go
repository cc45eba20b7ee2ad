package main

import (
	"slices"
	"strings"
	"testing"
)

func TestEveryProblemIsReportedAndNothingElse(t *testing.T) {
	got, err := check("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"func Undocumented has no doc comment",
		"field Thing.Field has no doc comment",
		"Event.Id: Event has no field or method Id",
		"Thing.Missing: Thing has no field or method Missing",
	}
	for i, g := range got {
		got[i] = g[strings.Index(g, ": ")+2:]
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTheClientsPackagesPass(t *testing.T) {
	for _, dir := range []string{"../..", "../../intentkittest"} {
		if got, err := check(dir); err != nil || len(got) > 0 {
			t.Errorf("%s: %v %v", dir, got, err)
		}
	}
}
