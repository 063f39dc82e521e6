package scalebench

import "testing"

func TestPodIPCanonical(t *testing.T) {
	for i, want := range map[int]string{1: "fd00:10:244::1", 0xffff: "fd00:10:244::ffff", 0x1002a: "fd00:10:244::1:2a", 150000: "fd00:10:244::2:49f0"} {
		if got := podIP(i); got != want {
			t.Errorf("podIP(%d) = %s, want %s", i, got, want)
		}
	}
}
