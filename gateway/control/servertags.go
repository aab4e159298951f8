package control

import (
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/conclave-lb/conclave/fsm"
)

// ServerTagParam is the create parameter through which a client chooses
// the kind of node for a meeting (Scalelite's tagged servers; Greenlight 3
// sends it). BBB lower-cases the names of meta_ parameters, so the name is
// matched without regard to case.
const ServerTagParam = "meta_server-tag"

// noneTag in a server-tag list stands for the nodes that carry no tag.
const noneTag = "none"

// ServerTags is a create's meta_server-tag, parsed as Scalelite does:
// a list of tags (separated by commas; Scalelite's semicolons work too),
// optional unless the value ends in "!", when they are required. A value
// that is empty or "!" alone is the same as no parameter.
type ServerTags struct {
	tags     []string // empty: the create expresses no preference
	required bool
	raw      string // the tags as the client gave them, "!" stripped (for messages)
}

// parseServerTags reads a meta_server-tag value.
func parseServerTags(v string) ServerTags {
	v = strings.TrimSpace(v)
	required := strings.HasSuffix(v, "!")
	v = strings.TrimSpace(strings.TrimSuffix(v, "!"))
	var st ServerTags
	for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' }) {
		if t = strings.TrimSpace(t); t != "" {
			st.tags = append(st.tags, t)
		}
	}
	if len(st.tags) == 0 {
		return ServerTags{} // Scalelite: "" and "!" are the same as no tag
	}
	st.required, st.raw = required, v
	return st
}

// ServerTagsOf finds meta_server-tag (any case) among create's parameters.
func ServerTagsOf(args *fasthttp.Args) ServerTags {
	var st ServerTags
	found := false
	args.VisitAll(func(k, v []byte) {
		if !found && len(k) == len(ServerTagParam) && strings.EqualFold(string(k), ServerTagParam) {
			st, found = parseServerTags(string(v)), true
		}
	})
	return st
}

// any reports whether the create names server tags at all.
func (st ServerTags) any() bool { return len(st.tags) > 0 }

// matches reports whether backend b is one the tags ask for: it carries one
// of them, or carries no tag at all when the list says "none".
func (st ServerTags) matches(b *fsm.Backend) bool {
	for _, t := range st.tags {
		if t == noneTag {
			if len(b.Settings.Tags) == 0 {
				return true
			}
			continue
		}
		for _, have := range b.Settings.Tags {
			if have == t {
				return true
			}
		}
	}
	return false
}

// ServerTagsInQuery reads meta_server-tag from a create's stored query
// (fsm.CreateParams.Query), for placing a meeting again on a node of the
// kind its create asked for.
func ServerTagsInQuery(query string) ServerTags {
	args := fasthttp.AcquireArgs()
	defer fasthttp.ReleaseArgs(args)
	args.Parse(query)
	return ServerTagsOf(args)
}
