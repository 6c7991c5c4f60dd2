// The client matrix's Go client, gomemcache (Debian's golang-github-bradfitz-gomemcache-dev, text protocol): the
// checks of README.md. Built with GOPATH=/usr/share/gocode GO111MODULE=off.
// Usage: matrix PORT   Prints `ok NAME` / `FAIL NAME: why` per check; exits 1 when any failed.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

var failed = 0

func check(name string, fn func() error) {
	if err := fn(); err != nil {
		failed++
		fmt.Printf("FAIL %s: %v\n", name, err)
	} else {
		fmt.Printf("ok %s\n", name)
	}
}

func main() {
	mc := memcache.New("127.0.0.1:" + os.Args[1])
	mc.Timeout = 5 * time.Second
	if err := mc.FlushAll(); err != nil {
		fmt.Printf("FAIL flush at start: %v\n", err)
		os.Exit(1)
	}
	check("set_get", func() error {
		if err := mc.Set(&memcache.Item{Key: "mx:k", Value: []byte("hello")}); err != nil {
			return err
		}
		it, err := mc.Get("mx:k")
		if err != nil {
			return err
		}
		if string(it.Value) != "hello" {
			return fmt.Errorf("get: got %q", it.Value)
		}
		return nil
	})
	check("get_multi", func() error {
		keys := []string{}
		for i := 0; i < 40; i++ {
			k := fmt.Sprintf("mx:m%d", i)
			keys = append(keys, k)
			if err := mc.Set(&memcache.Item{Key: k, Value: []byte("v" + k)}); err != nil {
				return err
			}
		}
		got, err := mc.GetMulti(keys)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if it, ok := got[k]; !ok || string(it.Value) != "v"+k {
				return fmt.Errorf("key %s missing or wrong (%d keys returned)", k, len(got))
			}
		}
		return nil
	})
	check("cas_round_trip", func() error {
		mc.Set(&memcache.Item{Key: "mx:c", Value: []byte("old")})
		it, err := mc.Get("mx:c")
		if err != nil {
			return err
		}
		stale := *it
		it.Value = []byte("new")
		if err := mc.CompareAndSwap(it); err != nil {
			return fmt.Errorf("cas with the current unique: %v", err)
		}
		stale.Value = []byte("again")
		if err := mc.CompareAndSwap(&stale); err != memcache.ErrCASConflict {
			return fmt.Errorf("cas with a stale unique: %v", err)
		}
		got, err := mc.Get("mx:c")
		if err != nil || string(got.Value) != "new" {
			return fmt.Errorf("value after cas: %v %v", got, err)
		}
		return nil
	})
	check("counter", func() error {
		mc.Set(&memcache.Item{Key: "mx:n", Value: []byte("10")})
		if v, err := mc.Increment("mx:n", 5); err != nil || v != 15 {
			return fmt.Errorf("incr: %d %v", v, err)
		}
		if v, err := mc.Decrement("mx:n", 3); err != nil || v != 12 {
			return fmt.Errorf("decr: %d %v", v, err)
		}
		return nil
	})
	check("add_delete", func() error {
		mc.Set(&memcache.Item{Key: "mx:d", Value: []byte("x")})
		if err := mc.Add(&memcache.Item{Key: "mx:d", Value: []byte("y")}); err != memcache.ErrNotStored {
			return fmt.Errorf("add of an existing key: %v", err)
		}
		if err := mc.Delete("mx:d"); err != nil {
			return fmt.Errorf("delete: %v", err)
		}
		if _, err := mc.Get("mx:d"); err != memcache.ErrCacheMiss {
			return fmt.Errorf("get after delete: %v", err)
		}
		if err := mc.Add(&memcache.Item{Key: "mx:d", Value: []byte("z")}); err != nil {
			return fmt.Errorf("add after delete: %v", err)
		}
		return nil
	})
	check("flush_all", func() error {
		keys := []string{}
		for i := 0; i < 40; i++ {
			k := fmt.Sprintf("mx:f%d", i)
			keys = append(keys, k)
			mc.Set(&memcache.Item{Key: k, Value: []byte("x")})
		}
		if err := mc.FlushAll(); err != nil {
			return err
		}
		got, err := mc.GetMulti(keys)
		if err != nil || len(got) != 0 {
			return fmt.Errorf("keys left after flush_all: %d %v", len(got), err)
		}
		return nil
	})
	if failed > 0 {
		os.Exit(1)
	}
}
