package imdsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Crawl reads the directory dir (such as "/latest/meta-data/") and everything
// under it into a tree for encoding/json: a directory is a map from its
// listing's names (without the trailing slash) to their contents; a leaf is
// its text, or its JSON document when it holds a JSON object; a listed leaf
// that answers 404 is nil. Lines of public-keys/ ("0=name") are read as the
// directory "0/", as cloud-init does, and so are the versions listed at "/"
// and meta-data and dynamic at a version's root, which EC2 lists without
// their trailing slash.
//
// Like cloud-init, Crawl does not descend into a security-credentials
// directory unless dir is inside one, so that a crawl does not print role
// credentials; their names are listed with nil contents.
func (c *Client) Crawl(ctx context.Context, dir string) (map[string]any, error) {
	if !strings.HasSuffix(dir, "/") {
		dir += "/"
	}
	return c.crawl(ctx, dir, strings.Contains(dir, "/security-credentials/"))
}

func (c *Client) crawl(ctx context.Context, dir string, secrets bool) (map[string]any, error) {
	r, err := c.Get(ctx, dir)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	skip := !secrets && strings.HasSuffix(dir, "/security-credentials/")
	for line := range strings.SplitSeq(string(r.Body), "\n") {
		if line == "" {
			continue
		}
		name, sub, isDir := line, line, strings.HasSuffix(line, "/")
		if isDir {
			name = strings.TrimSuffix(line, "/")
		} else if versionDirs(dir, line) {
			sub, isDir = line+"/", true
		}
		if idx, _, ok := strings.Cut(line, "="); ok && strings.HasSuffix(dir, "/public-keys/") {
			sub, isDir = idx+"/", true
		}
		if skip {
			out[name] = nil
			continue
		}
		if isDir {
			v, err := c.crawl(ctx, dir+sub, secrets)
			if err != nil {
				return nil, err
			}
			out[name] = v
			continue
		}
		v, err := c.leaf(ctx, dir+sub)
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

// versionDirs reports whether name, listed in dir without a trailing slash,
// is a directory all the same: the versions listed at "/", and meta-data and
// dynamic listed at a version's root ("/latest/").
func versionDirs(dir, name string) bool {
	if dir == "/" {
		return true
	}
	if strings.Count(dir, "/") != 2 {
		return false
	}
	return name == "meta-data" || name == "dynamic"
}

func (c *Client) leaf(ctx context.Context, path string) (any, error) {
	r, err := c.Get(ctx, path)
	var se *StatusError
	if errors.As(err, &se) && se.StatusCode() == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if b := bytes.TrimSpace(r.Body); len(b) > 0 && b[0] == '{' && json.Valid(b) {
		return json.RawMessage(b), nil
	}
	return string(r.Body), nil
}
