// Command app is the workload used by the end-to-end tests: it runs until it
// receives SIGTERM (or SIGINT), then waits APP_SHUTDOWN_DELAY before exiting
// 0, so that a pod stays Terminating for that long and termination grace
// periods can be tested.
//
// Environment:
//
//	APP_SHUTDOWN_DELAY  Go duration to wait after SIGTERM before exiting (default 0)
//	APP_LISTEN          HTTP listen address (default ":8080"; "off" disables it).
//	                    GET /healthz answers 200 while running; GET /readyz answers
//	                    200 until SIGTERM arrives, 503 afterwards.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds | log.LUTC)
	delay, err := shutdownDelay()
	if err != nil {
		log.Printf("app: %v", err)
		os.Exit(2)
	}
	listen := os.Getenv("APP_LISTEN")
	if listen == "" {
		listen = ":8080"
	}

	var stopping atomic.Bool
	var srv *http.Server
	if listen != "off" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if stopping.Load() {
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready")
		})
		srv = &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Printf("app: http: %v", err)
			}
		}()
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	log.Printf("app: running (pid %d, shutdown delay %s, http %q)", os.Getpid(), delay, listen)
	sig := <-sigs
	stopping.Store(true)
	log.Printf("app: received %s, exiting in %s", sig, delay)
	time.Sleep(delay)
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
	log.Printf("app: exiting")
}

func shutdownDelay() (time.Duration, error) {
	v := os.Getenv("APP_SHUTDOWN_DELAY")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("APP_SHUTDOWN_DELAY=%q: want a non-negative Go duration such as 3s", v)
	}
	return d, nil
}
