package bfd

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestPacketRoundTrip(t *testing.T) {
	for _, p := range []Packet{
		{State: Down, DetectMult: 3, MyDisc: 1, DesiredMinTx: time.Second, RequiredMinRx: 300 * time.Millisecond},
		{Diag: DiagDetectionExpired, State: Up, Poll: true, DetectMult: 5, MyDisc: 0xdeadbeef, YourDisc: 7,
			DesiredMinTx: 300 * time.Millisecond, RequiredMinRx: 200 * time.Millisecond, RequiredMinEchoRx: 50 * time.Millisecond},
		{Diag: DiagNeighborDown, State: Init, Final: true, CPI: true, Demand: true, DetectMult: 255, MyDisc: 1<<32 - 1, YourDisc: 1<<32 - 1,
			DesiredMinTx: (1<<32 - 1) * time.Microsecond, RequiredMinRx: time.Microsecond},
		{Diag: DiagAdminDown, State: AdminDown, DetectMult: 1, MyDisc: 9},
	} {
		b := p.Marshal()
		if len(b) != HeaderLen {
			t.Fatalf("%+v: %d bytes", p, len(b))
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		if got != p {
			t.Errorf("round trip: got %+v, want %+v", got, p)
		}
	}
}

// Bytes as FRR sends them (captured layout of RFC 5880 figure 1): version 1, diag 0,
// state Down, detect mult 3, length 24, my disc 0x01020304, your disc 0, desired TX 1 s,
// required RX 300 ms, echo 50 ms.
func TestPacketWire(t *testing.T) {
	wire := []byte{0x20, 0x40, 3, 24, 1, 2, 3, 4, 0, 0, 0, 0, 0x00, 0x0f, 0x42, 0x40, 0x00, 0x04, 0x93, 0xe0, 0x00, 0x00, 0xc3, 0x50}
	p, err := Unmarshal(wire)
	if err != nil {
		t.Fatal(err)
	}
	want := Packet{State: Down, DetectMult: 3, MyDisc: 0x01020304, DesiredMinTx: time.Second,
		RequiredMinRx: 300 * time.Millisecond, RequiredMinEchoRx: 50 * time.Millisecond}
	if p != want {
		t.Fatalf("got %+v, want %+v", p, want)
	}
	if b := p.Marshal(); !bytes.Equal(b, wire) {
		t.Errorf("marshal: got % x, want % x", b, wire)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	good := func() []byte {
		p := Packet{State: Up, DetectMult: 3, MyDisc: 1, YourDisc: 2, DesiredMinTx: time.Second, RequiredMinRx: time.Second}
		return p.Marshal()
	}
	for _, c := range []struct {
		name string
		edit func([]byte) []byte
		want error
	}{
		{"short", func(b []byte) []byte { return b[:23] }, ErrShort},
		{"version 0", func(b []byte) []byte { b[0] &^= 0xe0; return b }, ErrVersion},
		{"version 2", func(b []byte) []byte { b[0] = b[0]&0x1f | 2<<5; return b }, ErrVersion},
		{"length below 24", func(b []byte) []byte { b[3] = 23; return b }, ErrLength},
		{"length beyond the datagram", func(b []byte) []byte { b[3] = 25; return b }, ErrLength},
		{"auth bit with 24 bytes", func(b []byte) []byte { b[1] |= 0x04; return b }, ErrLength},
		{"auth section", func(b []byte) []byte { b[1] |= 0x04; b[3] = 26; return append(b, 1, 2) }, ErrAuth},
		{"detect mult 0", func(b []byte) []byte { b[2] = 0; return b }, ErrDetectMult},
		{"multipoint", func(b []byte) []byte { b[1] |= 0x01; return b }, ErrMultipoint},
		{"my disc 0", func(b []byte) []byte { copy(b[4:8], []byte{0, 0, 0, 0}); return b }, ErrMyDisc},
		{"your disc 0 in Up", func(b []byte) []byte { copy(b[8:12], []byte{0, 0, 0, 0}); return b }, ErrYourDisc},
		{"your disc 0 in Init", func(b []byte) []byte { copy(b[8:12], []byte{0, 0, 0, 0}); b[1] = 2 << 6; return b }, ErrYourDisc},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Unmarshal(c.edit(good()))
			if !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
	// Your Discriminator zero is fine while Down (the peer does not know ours yet), and a
	// longer datagram than the length field (padding) is accepted.
	p := Packet{State: Down, DetectMult: 3, MyDisc: 1}
	if _, err := Unmarshal(append(p.Marshal(), 0, 0)); err != nil {
		t.Errorf("Down with your disc 0 and padding: %v", err)
	}
}

// FuzzUnmarshal: any input either fails cleanly or decodes to a packet that encodes back to
// the same first 24 bytes (the auth bit aside, which is rejected).
func FuzzUnmarshal(f *testing.F) {
	p := Packet{State: Up, DetectMult: 3, MyDisc: 1, YourDisc: 2, DesiredMinTx: time.Second, RequiredMinRx: time.Second}
	f.Add(p.Marshal())
	f.Add([]byte{0x20, 0x40, 3, 24, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40, 0, 4, 0x93, 0xe0, 0, 0, 0xc3, 0x50})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Unmarshal(b)
		if err != nil {
			return
		}
		if p.DetectMult == 0 || p.MyDisc == 0 || p.Multipoint || p.Auth {
			t.Fatalf("accepted an invalid packet: %+v", p)
		}
		out := p.Marshal()
		want := append([]byte(nil), b[:HeaderLen]...)
		want[3] = HeaderLen // a longer length field (padding) is normalised
		if !bytes.Equal(out, want) {
			t.Fatalf("re-encoded % x, input % x", out, want)
		}
	})
}
