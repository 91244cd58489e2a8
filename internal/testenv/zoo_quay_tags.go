package testenv

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// quayTagPages lists reg's tags as quay's v2 `paginate` decorator does
// (quay/quay endpoints/v2/__init__.py, used by endpoints/v2/tag.py
// list_all_tags):
//   - reads the page size from n, capped at 100 and at least 1;
//   - reads the position from an opaque, encrypted `next_page` token (or,
//     failing that, from `last`, which it also decrypts as a token: a plain
//     tag name there is no token, so the listing starts over);
//   - links the next page with an absolute URL on its own host:
//     `Link: <https://quay.io/v2/<name>/tags/list?n=2&next_page=<token>>; rel="next"`.
//
// The token here is base64url (with padding, so it needs escaping) of the
// position; a mirror must treat it as opaque.
func quayTagPages(reg *url.URL) Quirk {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			repo := repoOf(r.URL.Path)
			if r.Method != http.MethodGet || repo == "" || !strings.HasSuffix(r.URL.Path, "/tags/list") {
				next.ServeHTTP(w, r)
				return
			}
			all, err := listAllTags(reg, repo)
			if err != nil {
				http.Error(w, `{"errors":[{"code":"NAME_UNKNOWN","message":"repository not found"}]}`, http.StatusNotFound)
				return
			}
			q := r.URL.Query()
			limit := 100
			if n, err := strconv.Atoi(q.Get("n")); err == nil {
				limit = n
			} else if q.Has("n") {
				limit = 0
			}
			limit = max(min(limit, 100), 1)
			token := q.Get("next_page")
			if token == "" {
				token = q.Get("last")
			}
			start := decodePageToken(token)
			end := min(start+limit, len(all))
			start = min(start, end)
			if end < len(all) {
				v := url.Values{"n": {strconv.Itoa(limit)}, "next_page": {encodePageToken(end)}}
				w.Header().Set("Link", fmt.Sprintf(`<http://%s/v2/%s/tags/list?%s>; rel="next"`, r.Host, repo, v.Encode()))
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": all[start:end]})
		})
	}
}

func encodePageToken(start int) string {
	return base64.URLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"start_id":%d}`, start)))
}

func decodePageToken(tok string) int {
	b, err := base64.URLEncoding.DecodeString(tok)
	if err != nil {
		return 0
	}
	var v struct {
		StartID int `json:"start_id"`
	}
	if json.Unmarshal(b, &v) != nil || v.StartID < 0 {
		return 0
	}
	return v.StartID
}

// listAllTags reads a repository's whole tag list from a registry.
func listAllTags(reg *url.URL, repo string) ([]string, error) {
	resp, err := http.Get(reg.String() + "/v2/" + repo + "/tags/list")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tags/list: %d", resp.StatusCode)
	}
	var body struct{ Tags []string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	slices.Sort(body.Tags)
	return body.Tags, nil
}
