package manifests

import (
	"strings"
	"unicode/utf8"
)

// parsePlain reads the images.txt style of RKE2 and k3s air-gap lists: one
// reference per line; blank lines and '#' comments, whole-line or
// trailing, are ignored.
func (p *parser) parsePlain(data []byte) {
	text := strings.TrimPrefix(string(data), "\uFEFF")
	for i, line := range strings.Split(text, "\n") {
		lineNo := i + 1
		line = strings.TrimSuffix(line, "\r")
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		trimmed := strings.TrimLeft(line, " \t")
		col := utf8.RuneCountInString(line[:len(line)-len(trimmed)]) + 1
		trimmed = strings.TrimRight(trimmed, " \t\r")
		if trimmed == "" {
			continue
		}
		pos := p.pos(lineNo, col)
		if !utf8.ValidString(trimmed) {
			p.errs.add(pos, nil, "line is not valid UTF-8")
			continue
		}
		parts, err := parseRef(trimmed)
		if err != nil {
			hint := ""
			if strings.HasPrefix(trimmed, "-") || strings.HasSuffix(trimmed, ":") {
				hint = " (this looks like YAML; name the file .yaml)"
			}
			p.errs.add(pos, err, "%s%s", err, hint)
			continue
		}
		e := newEntry(pos, parts)
		p.addEntry(e, entryNames(e, nil))
	}
	if p.errs.empty() && len(p.spec.Images) == 0 {
		p.errs.add(Pos{File: p.spec.File}, nil, "file lists no images (want one reference per line)")
	}
}
