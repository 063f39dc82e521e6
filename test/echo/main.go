// Command echo is the "pod" of the proxy tests and the lab: it answers every TCP connection
// and every UDP datagram with one line holding its name and the source address it sees,
//
//	pod-a 10.244.1.1:43210
//
// so a client learns which endpoint answered and whether its address was preserved or
// masqueraded. A TCP connection gets the line at once and is closed.
//
// Usage:
//
//	echo -name pod-a -tcp 8080,8081 -udp 5353 [-sctp 9000] [-addr ::]
//
// Ports are comma-separated; -addr is the address to listen on (default: all, both families).
// SCTP needs kernel SCTP support (CONFIG_IP_SCTP). It prints "ready" once every socket is open.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
)

func main() {
	name := flag.String("name", "", "Name to answer with (default: the host name).")
	tcp := flag.String("tcp", "", "Comma-separated TCP ports.")
	udp := flag.String("udp", "", "Comma-separated UDP ports.")
	sctp := flag.String("sctp", "", "Comma-separated SCTP ports.")
	addr := flag.String("addr", "", "Address to listen on (default: all).")
	flag.Parse()
	if *name == "" {
		*name, _ = os.Hostname()
	}
	for _, p := range ports(*tcp) {
		l, err := net.Listen("tcp", net.JoinHostPort(*addr, p))
		if err != nil {
			log.Fatal(err)
		}
		go serveStream(l, *name)
	}
	for _, p := range ports(*udp) {
		c, err := net.ListenPacket("udp", net.JoinHostPort(*addr, p))
		if err != nil {
			log.Fatal(err)
		}
		go servePacket(c, *name)
	}
	for _, p := range ports(*sctp) {
		n, err := strconv.Atoi(p)
		if err != nil {
			log.Fatalf("sctp port %q: %v", p, err)
		}
		l, err := listenSCTP(*addr, n)
		if err != nil {
			log.Fatal(err)
		}
		go serveStream(l, *name)
	}
	fmt.Println("ready")
	select {}
}

func ports(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func serveStream(l net.Listener, name string) {
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
		}()
	}
}

func servePacket(c net.PacketConn, name string) {
	buf := make([]byte, 65536)
	for {
		_, from, err := c.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		_, _ = c.WriteTo([]byte(fmt.Sprintf("%s %s\n", name, from)), from)
	}
}
