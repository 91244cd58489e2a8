package cache

import (
	"context"
	"crypto/sha256"
	"io"
	"time"
)

// KeepTagList stores the last good full tag list for stale serving, but
// only when it changed: a list is rewritten once per change, not once per
// request (a PUT costs 12 times a GET on S3). The first request per process
// compares with the stored copy.
func (c *Cache) KeepTagList(ctx context.Context, key string, body []byte) {
	sum := sha256.Sum256(body)
	old, ok := c.tagLists.Get(key, c.now(), 24*time.Hour)
	if !ok {
		if rc, _, err := c.store.Get(ctx, key); err == nil {
			stored, rerr := io.ReadAll(io.LimitReader(rc, maxTagList+1))
			rc.Close()
			if rerr == nil {
				old, ok = sha256.Sum256(stored), true
			}
		}
	}
	if ok && old == sum {
		c.tagLists.Put(key, sum, c.now())
		return
	}
	if err := c.store.Put(ctx, key, body); err != nil {
		c.log.Warn("could not cache tag list", "cause", err.Error())
		return
	}
	c.tagLists.Put(key, sum, c.now())
}

// maxTagList bounds a tag list kept or read back: the upstream client's
// bound on the lists it reads.
const maxTagList = 16 << 20

// TagList reads back the last good full tag list kept at key.
func (c *Cache) TagList(ctx context.Context, key string) ([]byte, error) {
	rc, _, err := c.store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxTagList))
}
