# Turns docs/guide/go.md into one Go program and the output it must print (test.sh runs it).
# A Go block that declares a function stays at the top level; every other Go block becomes, in
# page order, part of the body of run(ctx), after a line "--- block N" that it prints; a ```text
# block right after a Go block (blank lines between allowed) is what that block prints.
# Writes the blocks to PROG (after the caller's prelude) and the expected output to WANT.
/^```go$/ { ingo = 1; body = ""; next }
ingo && /^```$/ {
  ingo = 0
  if (body ~ /^func /) { top = top "\n" body; after = 0 }
  else {
    n++
    runs = runs sprintf("\tfmt.Println(\"--- block %d\")\n", n) body
    want = want sprintf("--- block %d\n", n)
    after = 1
  }
  next
}
ingo { body = body $0 "\n"; next }
/^```text$/ && after { intext = 1; next }
intext && /^```$/ { intext = 0; after = 0; next }
intext { want = want $0 "\n"; next }
/^[[:space:]]*$/ { next }
{ after = 0 }
END {
  printf "%s\nfunc run(ctx context.Context) error {\n%s\treturn nil\n}\n", top, runs >> PROG
  printf "%s", want > WANT
  if (n == 0) exit 1
}
