// Package bfd is Bidirectional Forwarding Detection in asynchronous mode (RFC 5880) over UDP,
// single hop (RFC 5881) and multihop (RFC 5883), for IPv4 and IPv6. It has no authentication,
// no demand mode and no echo function.
//
// packet.go is the wire format, session.go the state machine and its timers (driven by an
// injectable Clock, so both are unit tested without a network), and server.go the sockets.
package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is a session state as carried in the Sta field.
type State uint8

const (
	AdminDown State = 0
	Down      State = 1
	Init      State = 2
	Up        State = 3
)

func (s State) String() string {
	switch s {
	case AdminDown:
		return "AdminDown"
	case Down:
		return "Down"
	case Init:
		return "Init"
	case Up:
		return "Up"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Diag is the diagnostic code: why the sender's session last went down.
type Diag uint8

const (
	DiagNone               Diag = 0
	DiagDetectionExpired   Diag = 1
	DiagEchoFailed         Diag = 2
	DiagNeighborDown       Diag = 3
	DiagForwardingReset    Diag = 4
	DiagPathDown           Diag = 5
	DiagConcatPathDown     Diag = 6
	DiagAdminDown          Diag = 7
	DiagRevConcatPathDown  Diag = 8
	DiagMisconnectivityErr Diag = 9 // RFC 8562
)

var diagNames = [...]string{"no diagnostic", "control detection time expired", "echo function failed",
	"neighbor signaled session down", "forwarding plane reset", "path down", "concatenated path down",
	"administratively down", "reverse concatenated path down", "misconnectivity defect"}

func (d Diag) String() string {
	if int(d) < len(diagNames) {
		return diagNames[d]
	}
	return fmt.Sprintf("diagnostic %d", uint8(d))
}

// HeaderLen is the length of a control packet without authentication.
const HeaderLen = 24

// Packet is a BFD control packet (RFC 5880 section 4.1). Intervals travel in microseconds.
type Packet struct {
	Diag       Diag
	State      State
	Poll       bool
	Final      bool
	CPI        bool // control plane independent
	Auth       bool // an authentication section follows (we never send one)
	Demand     bool
	Multipoint bool
	DetectMult uint8
	MyDisc     uint32
	YourDisc   uint32

	DesiredMinTx      time.Duration
	RequiredMinRx     time.Duration
	RequiredMinEchoRx time.Duration
}

// Marshal encodes p without an authentication section. Intervals are rounded down to
// microseconds and capped at the field's 32 bits.
func (p *Packet) Marshal() []byte {
	b := make([]byte, HeaderLen)
	b[0] = 1<<5 | byte(p.Diag)&0x1f
	b[1] = byte(p.State&3) << 6
	for i, f := range []bool{p.Poll, p.Final, p.CPI, p.Auth, p.Demand, p.Multipoint} {
		if f {
			b[1] |= 1 << (5 - i)
		}
	}
	b[2] = p.DetectMult
	b[3] = HeaderLen
	binary.BigEndian.PutUint32(b[4:], p.MyDisc)
	binary.BigEndian.PutUint32(b[8:], p.YourDisc)
	binary.BigEndian.PutUint32(b[12:], micros(p.DesiredMinTx))
	binary.BigEndian.PutUint32(b[16:], micros(p.RequiredMinRx))
	binary.BigEndian.PutUint32(b[20:], micros(p.RequiredMinEchoRx))
	return b
}

func micros(d time.Duration) uint32 {
	us := d.Microseconds()
	if us < 0 {
		return 0
	}
	return uint32(min(us, 1<<32-1))
}

// Errors of Unmarshal: the packet must be discarded (RFC 5880 section 6.8.6).
var (
	ErrShort      = errors.New("bfd: packet shorter than its header")
	ErrVersion    = errors.New("bfd: version is not 1")
	ErrLength     = errors.New("bfd: bad length field")
	ErrDetectMult = errors.New("bfd: detect multiplier is zero")
	ErrMultipoint = errors.New("bfd: multipoint bit set")
	ErrMyDisc     = errors.New("bfd: my discriminator is zero")
	ErrYourDisc   = errors.New("bfd: your discriminator is zero in state Init or Up")
	ErrAuth       = errors.New("bfd: authentication is not supported")
)

// Unmarshal decodes a control packet and applies the reception checks of RFC 5880 section
// 6.8.6 that need no session. An authenticated packet is rejected: no session here is
// configured for authentication, and the RFC says to discard those.
func Unmarshal(b []byte) (Packet, error) {
	var p Packet
	if len(b) < HeaderLen {
		return p, ErrShort
	}
	if b[0]>>5 != 1 {
		return p, fmt.Errorf("%w (got %d)", ErrVersion, b[0]>>5)
	}
	p.Diag = Diag(b[0] & 0x1f)
	p.State = State(b[1] >> 6)
	p.Poll = b[1]&0x20 != 0
	p.Final = b[1]&0x10 != 0
	p.CPI = b[1]&0x08 != 0
	p.Auth = b[1]&0x04 != 0
	p.Demand = b[1]&0x02 != 0
	p.Multipoint = b[1]&0x01 != 0
	p.DetectMult = b[2]
	length := int(b[3])
	minLen := HeaderLen
	if p.Auth {
		minLen = HeaderLen + 2
	}
	if length < minLen || length > len(b) {
		return p, fmt.Errorf("%w: %d (packet %d bytes)", ErrLength, length, len(b))
	}
	p.MyDisc = binary.BigEndian.Uint32(b[4:])
	p.YourDisc = binary.BigEndian.Uint32(b[8:])
	p.DesiredMinTx = time.Duration(binary.BigEndian.Uint32(b[12:])) * time.Microsecond
	p.RequiredMinRx = time.Duration(binary.BigEndian.Uint32(b[16:])) * time.Microsecond
	p.RequiredMinEchoRx = time.Duration(binary.BigEndian.Uint32(b[20:])) * time.Microsecond
	switch {
	case p.DetectMult == 0:
		return p, ErrDetectMult
	case p.Multipoint:
		return p, ErrMultipoint
	case p.MyDisc == 0:
		return p, ErrMyDisc
	case p.YourDisc == 0 && p.State != Down && p.State != AdminDown:
		return p, ErrYourDisc
	case p.Auth:
		return p, ErrAuth
	}
	return p, nil
}
