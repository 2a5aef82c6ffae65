package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"time"
)

// raceConfig injects smolvm's warm-up race: an exec or cp issued within
// Window of the machine's start is killed (exit 137) with probability P.
type raceConfig struct {
	P float64
	// Window bounds the race to the first moments after start; when
	// unbounded the race applies whatever the machine's age.
	Window    time.Duration
	Unbounded bool
	Seed      uint64
}

func raceFromEnv() (raceConfig, error) {
	c := raceConfig{Unbounded: true}
	if s := os.Getenv("SMOLVM_SIM_RACE_P"); s != "" {
		p, err := strconv.ParseFloat(s, 64)
		if err != nil || p < 0 || p > 1 {
			return c, fmt.Errorf("SMOLVM_SIM_RACE_P=%q: want a probability in [0, 1]", s)
		}
		c.P = p
	}
	if s := os.Getenv("SMOLVM_SIM_RACE_MS"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			return c, fmt.Errorf("SMOLVM_SIM_RACE_MS=%q: want milliseconds >= 0", s)
		}
		c.Window, c.Unbounded = time.Duration(ms)*time.Millisecond, false
	}
	if s := os.Getenv("SMOLVM_SIM_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return c, fmt.Errorf("SMOLVM_SIM_SEED=%q: want an unsigned integer", s)
		}
		c.Seed = seed
	}
	return c, nil
}

// strikes decides whether call number call on machine name, started at
// started, loses the race. The draw depends only on the seed, the machine
// and the call number, so a run with the same seed and the same sequence
// of calls injects the same failures.
func (c raceConfig) strikes(name string, call uint64, started, now time.Time) bool {
	if c.P <= 0 {
		return false
	}
	if !c.Unbounded && now.Sub(started) >= c.Window {
		return false
	}
	return draw(c.Seed, name, call) < c.P
}

// draw maps (seed, machine, call) to a uniform number in [0, 1).
func draw(seed uint64, name string, call uint64) float64 {
	var buf []byte
	buf = binary.BigEndian.AppendUint64(buf, seed)
	buf = binary.BigEndian.AppendUint64(buf, call)
	buf = append(buf, name...)
	sum := sha256.Sum256(buf)
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}
