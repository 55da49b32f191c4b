package archive

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckVersionRefusesOldServers(t *testing.T) {
	for _, v := range [][3]uint64{{18, 14, 17}, {1, 1, 54394}, {17, 99, 0}} {
		err := checkVersion(v[0], v[1], v[2])
		if !errors.Is(err, ErrUnsupportedServer) || !strings.Contains(err.Error(), "18.16 or later") || !strings.Contains(err.Error(), "--clickhouse-addr") {
			t.Errorf("version %v: %v, want a refusal naming 18.16 and the setting", v, err)
		}
	}
	for _, v := range [][3]uint64{{18, 16, 1}, {19, 1, 0}, {24, 8, 4}, {25, 3, 0}} {
		if err := checkVersion(v[0], v[1], v[2]); err != nil {
			t.Errorf("version %v refused: %v", v, err)
		}
	}
}
