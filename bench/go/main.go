// getload: GetIntent through the Go client (bindings/go) at a fixed concurrency, for the
// grpc_get bench, which runs it beside its Rust client against the same server in one run.
//
//	getload -addr 127.0.0.1:50051 -token T -concurrency 64 -connections 4 -seconds 5 < ids
//
// Reads intent ids (one per line) from stdin; prints "rps p50_ms p99_ms" after a 0.5 s warm-up
// and the measured window.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"sync"
	"time"

	intentkit "github.com/intentkit/intentkit/bindings/go"
)

func main() {
	addr := flag.String("addr", "", "intentkitd's gRPC address")
	token := flag.String("token", "", "bearer token")
	concurrency := flag.Int("concurrency", 64, "calls in flight")
	connections := flag.Int("connections", 4, "HTTP/2 connections (one Client each)")
	seconds := flag.Float64("seconds", 5, "measured window")
	flag.Parse()
	var ids []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "" {
			ids = append(ids, sc.Text())
		}
	}
	if len(ids) == 0 {
		log.Fatal("no ids on stdin")
	}
	clients := make([]*intentkit.Client, *connections)
	for i := range clients {
		c, err := intentkit.Dial(*addr, intentkit.WithInsecure(), intentkit.WithToken(*token))
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	run := func(d time.Duration) []time.Duration {
		deadline := time.Now().Add(d)
		var mu sync.Mutex
		var all []time.Duration
		var wg sync.WaitGroup
		for w := range *concurrency {
			wg.Go(func() {
				c := clients[w%len(clients)]
				var lat []time.Duration
				for n := w; time.Now().Before(deadline); n += *concurrency {
					t := time.Now()
					if _, err := c.GetIntent(context.Background(), ids[n%len(ids)]); err != nil {
						log.Fatal(err)
					}
					lat = append(lat, time.Since(t))
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			})
		}
		wg.Wait()
		return all
	}
	run(500 * time.Millisecond)
	window := time.Duration(*seconds * float64(time.Second))
	all := run(window)
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(float64(len(all))*p))].Microseconds()) / 1000
	}
	fmt.Printf("%.0f %.2f %.2f\n", float64(len(all))/window.Seconds(), pct(0.50), pct(0.99))
}
