package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// listenSCTP opens a one-to-one style SCTP socket, which behaves like a TCP listener, and
// wraps it so serveStream can use it (the standard library has no SCTP).
func listenSCTP(addr string, port int) (net.Listener, error) {
	ip := netip.IPv6Unspecified()
	if addr != "" {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return nil, err
		}
		ip = a
	}
	var sa unix.Sockaddr
	family := unix.AF_INET6
	if ip.Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
	if err != nil {
		return nil, fmt.Errorf("sctp socket: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sctp bind %s:%d: %w", ip, port, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &sctpListener{fd: fd}, nil
}

type sctpListener struct{ fd int }

func (l *sctpListener) Accept() (net.Conn, error) {
	nfd, sa, err := unix.Accept(l.fd)
	if err != nil {
		return nil, err
	}
	return &sctpConn{File: os.NewFile(uintptr(nfd), "sctp"), remote: sockaddr(sa)}, nil
}

func (l *sctpListener) Close() error   { return unix.Close(l.fd) }
func (l *sctpListener) Addr() net.Addr { return nil }

type sctpConn struct {
	*os.File
	remote net.Addr
}

func (c *sctpConn) LocalAddr() net.Addr  { return nil }
func (c *sctpConn) RemoteAddr() net.Addr { return c.remote }

type sctpAddr string

func (a sctpAddr) Network() string { return "sctp" }
func (a sctpAddr) String() string  { return string(a) }

func sockaddr(sa unix.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sctpAddr(netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String())
	case *unix.SockaddrInet6:
		return sctpAddr(netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)).String())
	}
	return sctpAddr("?")
}
