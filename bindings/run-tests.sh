#!/usr/bin/env bash
# The C and PHP bindings' tests, against the Pientegra and Decentro simulators:
#  - C: the example and the test suite, compiled with -Wall -Wextra -Werror, the suite run
#    under valgrind (no definite leaks, no invalid access: any error fails the run), and the
#    close-under-calls race under AddressSanitizer;
#  - PHP: the class's flow test, 4 processes on one SQLite file, and a 10,000-call memory test;
#  - Go: the gRPC client against the real intentkitd (bindings/go/test.sh);
#  - Java: unit tests (in-process), then over Maven against the real intentkitd (-Pintegration),
#    the guide's blocks run against a sandbox, and the folder installed alone from a copy.
# Called by scripts/test.sh after `cargo build`; needs gcc, valgrind, php-cli with FFI, Go,
# protoc, Java 17 and Maven. One build of intentkitd ($INTENTKITD) serves every suite that needs a server.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}/debug
cargo build -q --locked -p intentkit-ffi -p intentkit-sandbox -p intentkit-grpc-server
export LD_LIBRARY_PATH="$target${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export INTENTKITD="$target/intentkitd"

work=$(mktemp -d)
sim_pid=""
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Simulators on free ports; their base URLs come from what they print.
"$target/intentkit-sandbox" --pientegra 127.0.0.1:0 --decentro 127.0.0.1:0 >"$work/sim.txt" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do grep -q "control endpoints" "$work/sim.txt" && break; sleep 0.1; done
p_base=$(sed -n 's/^pientegra simulator on \([^ ]*\).*/\1/p' "$work/sim.txt")
d_base=$(sed -n 's/^decentro simulator on \([^ ]*\).*/\1/p' "$work/sim.txt")
p_root=${p_base%/api/v1}
[ -n "$p_base" ] && [ -n "$d_base" ] || { cat "$work/sim.txt"; echo "simulators did not start" >&2; exit 1; }

config() { # config FILE DATABASE
  cat >"$1" <<TOML
[ffi]
database = "$2"
call_timeout_ms = 20000

[pientegra.tr-main]
base_url = "$p_base"
api_key = "pk_sandbox"
webhook_secret = "whsec_c2FuZGJveA"

[pientegra.tr-main.http]
# One retry: the fault tests fail a create quickly.
max_retries = 1

[decentro.in-main]
base_url = "$d_base"
client_id = "sandbox_client"
client_secret = "sandbox_client_secret"
module_secret = "sandbox_module_secret"
provider_secret = "sandbox_provider_secret"
TOML
}

echo "== C (gcc -Wall -Wextra -Werror, valgrind, ASan)"
cflags=(-std=c11 -Wall -Wextra -Werror -g -I bindings/c)
# The header's own examples (between \code and \endcode) compile as written.
n=0
while IFS= read -r -d '' block; do
  n=$((n + 1))
  printf '%s\n' "$block" >"$work/header-example-$n.c"
  gcc "${cflags[@]}" -c "$work/header-example-$n.c" -o "$work/header-example-$n.o" \
    || { cat -n "$work/header-example-$n.c"; echo "intentkit.h example $n does not compile" >&2; exit 1; }
done < <(awk '/\\code/{on=1; buf=""; next} /\\endcode/{on=0; printf "%s%c", buf, 0; next}
              on {sub(/^ \* ?/, ""); buf = buf $0 "\n"}' bindings/c/intentkit.h)
[ "$n" -gt 0 ] || { echo "no example found in intentkit.h" >&2; exit 1; }
echo "c header examples: $n compiled"
# Every C block of docs/guide/c.md compiles: each is the body of a function of its own beside
# the handle, error, strings and request the page's prose names.
{
  printf '#include <stddef.h>\n#include "intentkit.h"\n'
  printf 'static IntentkitHandle_t *ik;\nstatic IntentkitError_t e;\n'
  printf 'static char *answer, *page, *out, *report;\nstatic const char *request_json = "{}";\n'
  awk '/^```c$/{on=1; n++; printf "int guide_block%d(void);\nint guide_block%d(void) {\n", n, n; next}
       on && /^```$/{on=0; print "    return 0;\n}"; next}
       on' docs/guide/c.md
  printf 'void guide_uses(void);\nvoid guide_uses(void) { (void)ik; (void)e; (void)answer; (void)page; (void)out; (void)report; (void)request_json; }\n'
} >"$work/guide-c.c"
gcc "${cflags[@]}" -c "$work/guide-c.c" -o "$work/guide-c.o" \
  || { cat -n "$work/guide-c.c"; echo "a C block of docs/guide/c.md does not compile" >&2; exit 1; }
echo "c guide blocks: $(grep -c '^```c$' docs/guide/c.md) compiled"
gcc "${cflags[@]}" bindings/c/example.c -L "$target" -lintentkit -o "$work/example"
gcc "${cflags[@]}" -pthread bindings/c/tests/test_intentkit.c -L "$target" -lintentkit -o "$work/test_c"
config "$work/example.toml" "$work/example.db"
"$work/example" "$work/example.toml" | grep -q '"status":"INTENT_STATUS_PENDING"'
echo "c example: 1 passed, 0 failed"
config "$work/c.toml" "$work/c.db"
valgrind --log-file="$work/valgrind.txt" --error-exitcode=99 --leak-check=full \
  --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
  "$work/test_c" "$work/c.toml" "$p_root" || { cat "$work/valgrind.txt"; exit 1; }
grep -E "definitely lost|indirectly lost|possibly lost|still reachable|ERROR SUMMARY" "$work/valgrind.txt" \
  | sed 's/^==[0-9]*== */valgrind: /'
# intentkit_close racing 8 calling threads, 100 rounds, under AddressSanitizer instead of
# valgrind (the two do not mix; valgrind would also serialise the threads the race needs). The
# library is not instrumented, but ASan's allocator and interceptors still catch a read of a
# freed handle (the old Box-owned handle failed here with heap-use-after-free, or hung).
gcc "${cflags[@]}" -pthread -fsanitize=address -fno-omit-frame-pointer \
  bindings/c/tests/test_close_race.c -L "$target" -lintentkit -o "$work/test_close_race"
config "$work/close.toml" "$work/close.db"
"$work/test_close_race" "$work/close.toml"

echo "== PHP (FFI)"
php -r 'exit(extension_loaded("FFI") ? 0 : 1);' || { echo "php's FFI extension is not enabled" >&2; exit 1; }
# Every PHP block of docs/guide/php.md parses (php -l).
n=0
while IFS= read -r -d '' block; do
  n=$((n + 1))
  printf '<?php\n%s\n' "$block" >"$work/guide-$n.php"
  php -l "$work/guide-$n.php" >/dev/null || { cat -n "$work/guide-$n.php"; echo "PHP block $n of docs/guide/php.md does not parse" >&2; exit 1; }
done < <(awk '/^```php$/{on=1; buf=""; next} on && /^```$/{on=0; printf "%s%c", buf, 0; next} on {buf = buf $0 "\n"}' docs/guide/php.md)
echo "php guide blocks: $n parsed"
config "$work/php.toml" "$work/php.db"
INTENTKIT_LIB="$target/libintentkit.so" php bindings/php/tests/run.php "$work/php.toml" "$p_root"

# The same, with the 4 forked workers sharing one PostgreSQL database instead of a file (the
# server scripts/test.sh started; its own database for this run).
if [ -n "${INTENTKIT_TEST_POSTGRES:-}" ]; then
  echo "== PHP (FFI) on PostgreSQL"
  pg_db="ik_php_$$"
  psql -q "$INTENTKIT_TEST_POSTGRES" -c "CREATE DATABASE $pg_db"
  pg_url="${INTENTKIT_TEST_POSTGRES%/*}/$pg_db"
  config "$work/php-pg.toml" "$pg_url"
  INTENTKIT_LIB="$target/libintentkit.so" php bindings/php/tests/run.php "$work/php-pg.toml" "$p_root"
  psql -q "$INTENTKIT_TEST_POSTGRES" -c "DROP DATABASE $pg_db WITH (FORCE)"
elif [ -n "${INTENTKIT_REQUIRE_POSTGRES:-}" ]; then
  echo "INTENTKIT_REQUIRE_POSTGRES is set but INTENTKIT_TEST_POSTGRES is not" >&2
  exit 1
fi

echo "== Go (gRPC client)"
start=$SECONDS
bash bindings/go/test.sh
echo "go: $((SECONDS - start)) s"

echo "== Java (gRPC client, Maven)"
start=$SECONDS
# The module carries its copy of the schema (so that the folder builds alone): it must be proto/'s.
diff -r proto/intentkit bindings/java/src/main/proto/intentkit \
  || { echo "bindings/java/src/main/proto drifted from proto/: cp -r proto/intentkit bindings/java/src/main/proto/" >&2; exit 1; }
# Everything: the Javadoc lint (javac doclint, missing docs included, as errors), the unit tests on
# in-process servers, and -Pintegration's on the real intentkitd: the client's flows, the recovery
# after an 8 s outage, and every Java block of docs/guide/java.md run against a sandbox.
(cd bindings/java && mvn -B -ntp -Pintegration verify) >"$work/java.txt" 2>&1 || { cat "$work/java.txt"; exit 1; }
grep -E '^\[(INFO|WARNING)\] Tests run: [0-9]+, Failures: 0, Errors: 0, Skipped: [0-9]+$' "$work/java.txt" | tail -1
grep -E '^(guide blocks|recovery|in-process):' "$work/java.txt" || true
# The folder alone, as a user gets it: a copy outside the checkout, `mvn install`, unit tests only.
mkdir "$work/java-alone"
cp -r bindings/java "$work/java-alone/"
rm -rf "$work/java-alone/java/target"
(cd "$work/java-alone/java" && mvn -B -ntp install) >"$work/java-alone.txt" 2>&1 \
  || { cat "$work/java-alone.txt"; echo "bindings/java does not install on its own" >&2; exit 1; }
grep -E '^\[(INFO|WARNING)\] Tests run: [0-9]+, Failures: 0, Errors: 0, Skipped: [0-9]+$' "$work/java-alone.txt" | tail -1
echo "java alone (copy of bindings/java, mvn install): 1 passed, 0 failed"
echo "java: $((SECONDS - start)) s"
