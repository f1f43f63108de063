// udp_go_echo: the Go peer of the UDP benchmark (issue #10,
// bench/udp_bench.sh): a net.UDPConn echo server, standard library only,
// written as Go programs are: one goroutine reading with ReadFromUDPAddrPort
// (no allocation per datagram) and writing each echo with WriteToUDPAddrPort.
// Go has no batched calls in its standard library (golang.org/x/net/ipv4's
// ReadBatch is outside it), so this is one recvfrom and one sendto per
// datagram, with the runtime's netpoller parking the goroutine when the
// socket is empty.
//
//	udp_go_echo PORT [HOST]
//	    prints "listening on HOST:PORT", exits 0 on SIGTERM or SIGINT
package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: udp_go_echo PORT [HOST]")
		os.Exit(2)
	}
	port, err := strconv.Atoi(os.Args[1])
	host := "127.0.0.1"
	if len(os.Args) == 3 {
		host = os.Args[2]
	}
	ip, perr := netip.ParseAddr(host)
	if err != nil || perr != nil || port < 0 || port > 65535 {
		fmt.Fprintf(os.Stderr, "udp_go_echo: bad address %s:%s\n", host, os.Args[1])
		os.Exit(2)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		fmt.Fprintln(os.Stderr, "udp_go_echo:", err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		os.Exit(0) // the socket closes with the process, as in the C reference
	}()
	fmt.Printf("listening on %s:%d\n", host, c.LocalAddr().(*net.UDPAddr).Port)
	buf := make([]byte, 65536)
	for {
		n, peer, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue // an ICMP error for an earlier echo: go on
		}
		// an error concerns this one datagram: go on
		_, _ = c.WriteToUDPAddrPort(buf[:n], peer)
	}
}
