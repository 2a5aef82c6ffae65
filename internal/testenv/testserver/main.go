// Command testserver is the upstream server of integration tests: it runs
// in a container of the test's own and answers every HTTP (and, with a
// certificate, HTTPS) request with a JSON echo of what it received, so a
// test can see what the egress proxy forwarded (or that nothing arrived).
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

// Echo is the JSON body of every answer.
type Echo struct {
	Method string              `json:"method"`
	Host   string              `json:"host"`
	Path   string              `json:"path"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
	TLS    bool                `json:"tls"`
}

func main() {
	httpAddr := flag.String("http", ":80", "plain HTTP listen address (empty: off)")
	httpsAddr := flag.String("https", "", "HTTPS listen address (needs -cert and -key)")
	cert := flag.String("cert", "", "PEM certificate")
	key := flag.String("key", "", "PEM key")
	flag.Parse()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Echo{r.Method, r.Host, r.URL.Path, r.Header, string(body), r.TLS != nil})
	})
	errs := make(chan error, 2)
	if *httpAddr != "" {
		go func() {
			s := &http.Server{Addr: *httpAddr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
			errs <- s.ListenAndServe()
		}()
	}
	if *httpsAddr != "" {
		go func() {
			s := &http.Server{Addr: *httpsAddr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
			errs <- s.ListenAndServeTLS(*cert, *key)
		}()
	}
	log.Printf("ready")
	log.Println(<-errs)
	os.Exit(1)
}
