package pipeline

import "testing"

func TestParseRelabel(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Relabel
	}{{"", RelabelAuto}, {"auto", RelabelAuto}, {"on", RelabelOn}, {"off", RelabelOff}} {
		got, err := ParseRelabel(c.in)
		if err != nil || got != c.want || (c.in != "" && got.String() != c.in) {
			t.Errorf("%q: %v %v", c.in, got, err)
		}
	}
	if _, err := ParseRelabel("yes"); err == nil {
		t.Error("yes accepted")
	}
}
