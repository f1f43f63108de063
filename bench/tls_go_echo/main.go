// tls_go_echo: the Go peer of the TLS benchmark (issue #9, bench/tls_bench.sh):
// a crypto/tls echo server, standard library only, a goroutine per
// connection, as Go programs are written.
//
//	tls_go_echo PORT CERT_PEM KEY_PEM [HOST]
//	    prints "listening on HOST:PORT", exits 0 on SIGTERM or SIGINT
//
// TLS: crypto/tls defaults (TLS 1.3 preferred, X25519 first, session tickets
// sent) with TLS 1.2 as the floor, as in bench/tls_raw_echo.c. Each
// connection copies what it reads back with one 16 KiB buffer, the largest
// TLS record, so that each echo is one record as in the C reference.
package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16384)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) < 4 || len(os.Args) > 5 {
		fmt.Fprintln(os.Stderr, "usage: tls_go_echo PORT CERT_PEM KEY_PEM [HOST]")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	host := "127.0.0.1"
	if len(os.Args) == 5 {
		host = os.Args[4]
	}
	if err != nil || port < 0 || port > 65535 || net.ParseIP(host) == nil {
		fmt.Fprintf(os.Stderr, "tls_go_echo: bad address %s:%s\n", host, os.Args[1])
		os.Exit(2)
	}
	cert, err := tls.LoadX509KeyPair(os.Args[2], os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "tls_go_echo:", err)
		os.Exit(1)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ln, err := tls.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tls_go_echo:", err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		os.Exit(0) // connections close with the process, as in the C reference
	}()
	fmt.Printf("listening on %s:%d\n", host, ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			// EMFILE and the like: the listener stays open; pause, not spin
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go echo(c)
	}
}
