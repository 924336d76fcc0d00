//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package dualstack

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestZoneCache: interface names are read again when a minute old, as
// the net package reads them, and at once for an index not known; a
// failure to read them (EMFILE) gives the number, which is not kept.
func TestZoneCache(t *testing.T) {
	clock := time.Unix(1e9, 0)
	table := []net.Interface{{Index: 2, Name: "eth0"}}
	var fail error
	reads := 0
	z := &zoneCache{
		interfaces: func() ([]net.Interface, error) {
			reads++
			return table, fail
		},
		now: func() time.Time { return clock },
	}
	assert.Equal(t, "eth0", z.name(2))
	assert.Equal(t, "eth0", z.name(2))
	assert.Equal(t, 1, reads, "a known index is served from the table")

	// Renamed: seen once the table is a minute old.
	table = []net.Interface{{Index: 2, Name: "wan0"}}
	clock = clock.Add(30 * time.Second)
	assert.Equal(t, "eth0", z.name(2), "within the minute, as net")
	clock = clock.Add(31 * time.Second)
	assert.Equal(t, "wan0", z.name(2))

	// A new interface is read at once.
	table = append(table, net.Interface{Index: 3, Name: "eth1"})
	assert.Equal(t, "eth1", z.name(3))

	// Out of descriptors: the number, not remembered.
	fail = &net.OpError{Op: "route", Err: errors.Join(syscall.EMFILE)}
	table = nil
	assert.Equal(t, "7", z.name(7))
	fail, table = nil, []net.Interface{{Index: 7, Name: "wlan0"}}
	assert.Equal(t, "wlan0", z.name(7), "the number was not kept")
}
