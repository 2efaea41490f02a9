package manifests

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Pos is a place in a manifest file. String gives "images.yaml:12:5"
// (line:col, both 1-based); a zero Col or Line is left out.
type Pos struct {
	File      string
	Line, Col int
}

func (p Pos) String() string {
	s := p.File
	if p.Line > 0 {
		s += ":" + strconv.Itoa(p.Line)
		if p.Col > 0 {
			s += ":" + strconv.Itoa(p.Col)
		}
	}
	return s
}

// Error is one problem in a manifest file or a lockfile, at a position.
// Parse and ReadLock return every problem they find, in file order,
// joined with errors.Join; errors.As finds the first one.
type Error struct {
	Pos Pos
	Msg string // what is wrong, lower case, one line
	Err error  // underlying cause, if any
}

func (e *Error) Error() string {
	if e.Pos == (Pos{}) {
		return e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// maxErrors caps how many problems one file reports, so that a wrong file
// (a tarball passed as the manifest) gives a readable answer.
const maxErrors = 50

// errList collects the problems found in one file.
type errList struct {
	file string
	errs []error
	more int
}

func (l *errList) add(pos Pos, cause error, format string, a ...any) {
	if len(l.errs) >= maxErrors {
		l.more++
		return
	}
	l.errs = append(l.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, a...), Err: cause})
}

func (l *errList) empty() bool { return len(l.errs) == 0 }

// count is how many problems have been found so far, shown or not.
func (l *errList) count() int { return len(l.errs) + l.more }

func (l *errList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	// In file order, whatever order the checks ran in.
	errs := slices.Clone(l.errs)
	slices.SortStableFunc(errs, func(a, b error) int {
		pa, pb := a.(*Error).Pos, b.(*Error).Pos
		if pa.Line != pb.Line {
			return cmp.Compare(pa.Line, pb.Line)
		}
		return cmp.Compare(pa.Col, pb.Col)
	})
	if l.more > 0 {
		errs = append(errs[:len(errs):len(errs)], &Error{
			Pos: Pos{File: l.file},
			Msg: fmt.Sprintf("%d more problems not shown", l.more),
		})
	}
	return errors.Join(errs...)
}
