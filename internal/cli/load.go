package cli

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// A binary's settings are one struct whose fields carry their tags:
//
//	env:"OBOL_X[,FALLBACK]"  the variable(s), first one set wins
//	flag:"name"              the flag (none: environment only)
//	default:"value"          the default, in the accepted form
//	form:"text"              the accepted form (default: from the type)
//	oneof:"a|b"              the only accepted values
//	positive:"true"          a number or duration above zero (when given)
//	doc:"text"               what it does
//	secret:"true"            a token, key or password: environment only, never printed
//	secret:"password"        a URL that may carry a password: never printed; by flag
//	                         only without one (flags show in process listings)
//	readby:"package"         documented here, read and checked by that package
//	                         (e.g. OBOL_TRACING by internal/telemetry): not loaded
//	note:"text"              what this binary does with it beyond doc (its default,
//	                         where it falls back to): doc is the variable's meaning,
//	                         the same in every binary that reads it; note is not
//	was:"OBOL_OLD[,...]"     names this setting had: one set in the environment
//	                         stops the start naming the setting's variable (never
//	                         a silent ignore of a renamed setting)
//
// A variable may hold "OBOL_*_": it is the daemon's own setting (its
// listeners, its server TLS), named after the daemon given by the tag
// envprefix:"VAULTD" on the embedded struct holding it, e.g.
// OBOL_*_TLS_CERT in ServerTLS embedded with envprefix:"GATEWAYD" is
// OBOL_GATEWAYD_TLS_CERT. Doc, note and was take the same substitution.
// One variable has one meaning in every binary that reads it, so that one
// environment file can hold the settings of every daemon.
//
// Field types: string, bool, int, int64, time.Duration, []string (comma
// separated) and map[string]string (comma-separated key=value pairs).
// Untagged fields are left alone; embedded structs are walked.
//
// Load parses the flags, then fills every setting whose flag was not given
// from its variable, else its default: flags override the environment. A
// value that does not parse, in a flag or a variable, is an error naming
// it and the accepted form, never silently the default. Values are never
// repeated in errors: a secret may have been pasted into the wrong place.

// ErrBadFlag marks a start-up refusal for a flag whose value is refused.
var ErrBadFlag = errors.New("bad flag")

// Setting is one configurable field of a config struct.
type Setting struct {
	Env      []string // variables, first one set wins; none: flag only
	Flag     string   // flag name; "": environment only
	Default  string
	Form     string // accepted form, in words
	OneOf    []string
	Doc      string
	Secret   bool     // token, key or password: environment only, never printed
	Password bool     // URL that may carry a password: never printed, flag only without one
	Positive bool     // a number or duration that must be above zero when given
	ReadBy   string   // the package that reads and checks it ("": the loader)
	Note     string   // this binary's use of it beyond Doc (e.g. its default)
	Was      []string // former variables, refused at start naming Env[0]
	Type     string
	Field    string // Go field path, e.g. Edge.HTTPTLS

	v *reflect.Value
}

// Var is the setting's main variable ("" if it has none).
func (s *Setting) Var() string {
	if len(s.Env) == 0 {
		return ""
	}
	return s.Env[0]
}

// Name is how an error names the setting: its variable, else its flag.
func (s *Setting) Name() string {
	if v := s.Var(); v != "" {
		return v
	}
	return "--" + s.Flag
}

var durationType = reflect.TypeOf(time.Duration(0))

// Settings describes cfg (a pointer to a config struct). A malformed tag or
// default panics: it is a programming error, caught by every binary's
// tests (see clitest.Config).
func Settings(cfg any) []*Setting {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("cli: %T is not a pointer to a struct", cfg))
	}
	var out []*Setting
	walk(v.Elem(), "", "", &out)
	return out
}

// daemonVar names the daemon's own variables (see envprefix).
const daemonVar = "OBOL_*_"

func walk(v reflect.Value, prefix, daemon string, out *[]*Setting) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		fv := v.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			d := daemon
			if p := f.Tag.Get("envprefix"); p != "" {
				d = p
			}
			walk(fv, prefix+f.Name+".", d, out)
			continue
		}
		sub := func(tag string) string {
			v := f.Tag.Get(tag)
			if daemon != "" {
				v = strings.ReplaceAll(v, daemonVar, "OBOL_"+daemon+"_")
			}
			return v
		}
		env, flg := sub("env"), f.Tag.Get("flag")
		if env == "" && flg == "" {
			continue
		}
		if strings.Contains(env, "*") || strings.Contains(sub("doc"), daemonVar) {
			panic(fmt.Sprintf("cli: %s names a daemon's variable (%s) outside a struct embedded with envprefix", prefix+f.Name, daemonVar))
		}
		s := &Setting{Flag: flg, Default: f.Tag.Get("default"), Form: f.Tag.Get("form"), Doc: sub("doc"), Note: sub("note"), Field: prefix + f.Name, v: &fv}
		if env != "" {
			s.Env = strings.Split(env, ",")
		}
		if was := sub("was"); was != "" {
			if env == "" {
				panic(fmt.Sprintf("cli: %s: was names former variables of a setting that has none", s.Field))
			}
			s.Was = strings.Split(was, ",")
		}
		s.Positive = f.Tag.Get("positive") == "true"
		s.ReadBy = f.Tag.Get("readby")
		if s.ReadBy != "" && flg != "" {
			panic(fmt.Sprintf("cli: %s is read by %s: it has no flag", prefix+f.Name, s.ReadBy))
		}
		if o := f.Tag.Get("oneof"); o != "" {
			s.OneOf = strings.Split(o, "|")
		}
		switch f.Tag.Get("secret") {
		case "":
		case "true":
			s.Secret = true
		case "password":
			s.Password = true
		default:
			panic(fmt.Sprintf("cli: %s: secret:%q: want true or password", s.Field, f.Tag.Get("secret")))
		}
		if s.Secret && s.Flag != "" {
			panic(fmt.Sprintf("cli: %s is secret: it comes from the environment only, never a flag", s.Field))
		}
		if s.Secret && s.Default != "" {
			panic(fmt.Sprintf("cli: %s is secret: it has no default", s.Field))
		}
		if s.Doc == "" {
			panic(fmt.Sprintf("cli: %s has no doc", s.Field))
		}
		s.Type, s.Form = typeOf(fv.Type(), s.Form, s.OneOf, s.Positive)
		if s.Type == "" {
			panic(fmt.Sprintf("cli: %s: unsupported type %s", s.Field, fv.Type()))
		}
		if err := s.set(s.Default); err != nil {
			panic(fmt.Sprintf("cli: %s: default %q: %v", s.Field, s.Default, err))
		}
		*out = append(*out, s)
	}
}

func typeOf(t reflect.Type, form string, oneof []string, positive bool) (name, want string) {
	def := func(s string) string {
		if form != "" {
			return form
		}
		if len(oneof) == 2 {
			return strings.Join(oneof, " or ")
		}
		if len(oneof) > 2 {
			return "one of " + strings.Join(oneof, ", ")
		}
		return s
	}
	switch {
	case t == durationType && positive:
		return "duration", def("a positive duration with a unit, e.g. 30s, 15m or 1h")
	case t == durationType:
		return "duration", def("a duration with a unit, 0 or more, e.g. 30s, 15m or 1h")
	case positive && (t.Kind() == reflect.Int || t.Kind() == reflect.Int64):
		return "int", def("a positive whole number")
	case t.Kind() == reflect.String:
		return "string", def("text")
	case t.Kind() == reflect.Bool:
		return "bool", def("true or false")
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "int", def("a whole number")
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "list", def("comma-separated values")
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String:
		return "pairs", def("comma-separated key=value pairs")
	}
	return "", ""
}

// errSpace: a value with leading or trailing whitespace, typically the
// newline of a secret read from a file (a token "tok\n" that no caller
// ever presents).
var errSpace = errors.New("leading or trailing whitespace")

// refusal is how Load describes a refused value of the setting.
func (s *Setting) refusal(err error) string {
	if errors.Is(err, errSpace) {
		return "the value has leading or trailing whitespace (a newline from a file?); want " + s.Form
	}
	return "the value does not parse; want " + s.Form
}

// emptyAccepted reports whether an explicitly empty flag value means
// something: an empty list, or text whose default is empty or whose form
// names the empty value (e.g. --demo-addr ""). Otherwise "" would silently
// be the zero value: --payout-delay "" was 0 days, --log-format "" json.
func (s *Setting) emptyAccepted() bool {
	switch s.Type {
	case "list", "pairs":
		return true
	case "string":
		return len(s.OneOf) == 0 && (s.Default == "" || strings.Contains(s.Form, "empty"))
	}
	return false
}

// set parses raw into the field ("" is the zero value).
func (s *Setting) set(raw string) error {
	v := *s.v
	if raw != strings.TrimSpace(raw) {
		return errSpace
	}
	if raw != "" && len(s.OneOf) > 0 && !slices.Contains(s.OneOf, raw) {
		return errors.New("not one of the accepted values")
	}
	switch s.Type {
	case "duration":
		d := time.Duration(0)
		if raw != "" {
			var err error
			if d, err = time.ParseDuration(raw); err != nil || d < 0 || s.Positive && d == 0 {
				return errors.New("not a duration")
			}
		}
		v.SetInt(int64(d))
	case "string":
		v.SetString(raw)
	case "bool":
		b := false
		if raw != "" {
			var err error
			if b, err = strconv.ParseBool(raw); err != nil {
				return errors.New("not a bool")
			}
		}
		v.SetBool(b)
	case "int":
		n := int64(0)
		if raw != "" {
			var err error
			if n, err = strconv.ParseInt(raw, 10, 64); err != nil || v.OverflowInt(n) || s.Positive && n <= 0 {
				return errors.New("not a whole number")
			}
		}
		v.SetInt(n)
	case "list":
		var l []string
		for _, e := range strings.Split(raw, ",") {
			if e = strings.TrimSpace(e); e != "" {
				l = append(l, e)
			}
		}
		v.Set(reflect.ValueOf(l))
	case "pairs":
		m := map[string]string{}
		for _, kv := range strings.Split(raw, ",") {
			if kv = strings.TrimSpace(kv); kv == "" {
				continue
			}
			k, val, ok := strings.Cut(kv, "=")
			if !ok || strings.TrimSpace(k) == "" || strings.TrimSpace(val) == "" {
				return errors.New("not key=value pairs")
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		if len(m) == 0 {
			m = nil
		}
		v.Set(reflect.ValueOf(m))
	}
	return nil
}

// flagValue is a setting as a pflag.Value. Set keeps the text only; Load
// parses it, so that pflag's own error (which repeats the value) is never
// produced.
type flagValue struct {
	s   *Setting
	raw string
}

func (f *flagValue) String() string {
	if f.s.Password {
		return ""
	}
	return f.s.Default
}
func (f *flagValue) Set(v string) error { f.raw = v; return nil }
func (f *flagValue) Type() string {
	if f.s.Type == "bool" {
		return "" // pflag prints no value placeholder for a bool
	}
	return f.s.Type
}

// Loader is a config struct bound to a flag set.
type Loader struct {
	fs       *pflag.FlagSet
	settings []*Setting
	flags    map[*Setting]*flagValue
}

// Bind registers cfg's flags on fs (cfg is a pointer to a config struct;
// its fields take their defaults now). Call Load after fs.Parse.
func Bind(fs *pflag.FlagSet, cfg any) *Loader {
	l := &Loader{fs: fs, settings: Settings(cfg), flags: map[*Setting]*flagValue{}}
	for _, s := range l.settings {
		if s.Flag == "" {
			continue
		}
		fv := &flagValue{s: s}
		f := fs.VarPF(fv, s.Flag, "", usage(s))
		if s.Type == "bool" {
			f.NoOptDefVal = "true"
		}
		if s.Password {
			f.DefValue = ""
		}
		l.flags[s] = fv
	}
	return l
}

// Text is the setting's doc with this binary's note.
func (s *Setting) Text() string {
	if s.Note != "" {
		return s.Doc + "; " + s.Note
	}
	return s.Doc
}

func usage(s *Setting) string {
	u := s.Text()
	if s.Type != "string" && s.Type != "bool" || len(s.OneOf) > 0 {
		u += " (" + s.Form + ")"
	}
	if len(s.Env) > 0 {
		u += " [$" + strings.Join(s.Env, ", $") + "]"
	}
	return u
}

// Load fills every setting after fs.Parse: the flag when given, else the
// first variable set, else the default. Every refused value is reported
// at once, each naming its flag or variable and the accepted form.
func (l *Loader) Load() error {
	var flagErrs, envErrs []string
	envErrs = append(envErrs, Renamed(l.settings)...)
	for _, s := range l.settings {
		if s.ReadBy != "" {
			continue
		}
		if fv := l.flags[s]; fv != nil && l.fs.Changed(s.Flag) {
			if fv.raw == "" && !s.emptyAccepted() {
				flagErrs = append(flagErrs, fmt.Sprintf("--%s: the value is empty; want %s", s.Flag, s.Form))
				continue
			}
			if err := s.set(fv.raw); err != nil {
				flagErrs = append(flagErrs, fmt.Sprintf("--%s: %s", s.Flag, s.refusal(err)))
				continue
			}
			if s.Password && hasPassword(fv.raw) {
				env := ""
				if v := s.Var(); v != "" {
					env = " (put it in " + v + ")"
				}
				flagErrs = append(flagErrs, fmt.Sprintf("--%s: the URL carries a password, which a flag would show in process listings; pass it in the environment%s", s.Flag, env))
			}
			continue
		}
		for _, name := range s.Env {
			raw, ok := os.LookupEnv(name)
			if !ok || raw == "" {
				continue
			}
			if err := s.set(raw); err != nil {
				envErrs = append(envErrs, fmt.Sprintf("%s: %s", name, s.refusal(err)))
			}
			break
		}
	}
	var errs []error
	if len(flagErrs) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrBadFlag, strings.Join(flagErrs, "; ")))
	}
	if len(envErrs) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrBadEnv, strings.Join(envErrs, "; ")))
	}
	return errors.Join(errs...)
}

// Renamed lists, one line per former variable (a was tag) set in the
// environment, what to set instead, e.g. "OBOL_HTTP_ADDR is no longer
// read: set OBOL_GATEWAYD_HTTP_ADDR". The value is never shown.
func Renamed(settings []*Setting) []string {
	now := map[string][]string{}
	var order []string
	for _, s := range settings {
		for _, w := range s.Was {
			if os.Getenv(w) == "" {
				continue
			}
			if _, ok := now[w]; !ok {
				order = append(order, w)
			}
			if !slices.Contains(now[w], s.Var()) {
				now[w] = append(now[w], s.Var())
			}
		}
	}
	sort.Strings(order)
	out := make([]string, 0, len(order))
	for _, w := range order {
		out = append(out, fmt.Sprintf("%s is no longer read: set %s", w, strings.Join(now[w], " or ")))
	}
	return out
}

// hasPassword reports whether a URL (or a libpq key=value string) carries
// a password.
func hasPassword(raw string) bool {
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" {
		if _, ok := u.User.Password(); ok {
			return true
		}
		return u.Query().Has("password")
	}
	return libpqPassword.MatchString(raw)
}

// libpqPassword finds the password keyword of a libpq key=value string,
// spaces around "=" allowed (libpq accepts "password = x").
var libpqPassword = regexp.MustCompile(`(^|\s)password\s*=`)

// Given reports whether the setting in field (its Go field path, e.g.
// "LedgerAddr") was given explicitly, by flag or by variable.
func (l *Loader) Given(field string) bool {
	for _, s := range l.settings {
		if s.Field != field {
			continue
		}
		if s.Flag != "" && l.fs.Changed(s.Flag) {
			return true
		}
		for _, name := range s.Env {
			if os.Getenv(name) != "" {
				return true
			}
		}
	}
	return false
}

// EnvHelp lists, for -h, cfg's variables that have no flag (each flag's
// usage names its own variables). Secret values are never shown: -h only
// ever prints defaults, and secrets have none.
func EnvHelp(cfg any) string {
	cfg = reflect.New(reflect.TypeOf(cfg).Elem()).Interface() // a fresh copy: Settings resets the defaults
	var b strings.Builder
	for _, s := range Settings(cfg) {
		if len(s.Env) == 0 || s.Flag != "" {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("Environment only (see deploy/CONFIG.md):\n")
		}
		doc := s.Text()
		if s.Secret {
			doc += " (secret, environment only"
			if s.Form != "text" {
				doc += "; " + s.Form
			}
			doc += ")"
		}
		if s.ReadBy != "" {
			doc += " (" + s.Form + ")"
		}
		fmt.Fprintf(&b, "  %-28s %s\n", strings.Join(s.Env, ", "), doc)
	}
	return b.String()
}

// Parse is Bind, fs.Parse and Load for a daemon: -h/--help prints the
// flags and every variable and returns pflag.ErrHelp (Exit turns it into
// status 0).
func Parse(fs *pflag.FlagSet, cfg any, args []string) error {
	l := Bind(fs, cfg)
	fs.SetOutput(UsageOutput)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of %s:\n%s\n%s", fs.Name(), fs.FlagUsages(), EnvHelp(cfg))
	}
	if err := fs.Parse(args); err != nil {
		return FlagError(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrBadFlag, fs.Arg(0))
	}
	return l.Load()
}

// UnknownEnv lists the OBOL_* variables set in the environment that are
// not in known and do not start with one of ignore's prefixes, sorted.
func UnknownEnv(known map[string]bool, ignore ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "OBOL_") || known[name] {
			continue
		}
		if slices.ContainsFunc(ignore, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// FlagError rewrites pflag's parse errors that repeat what was typed (the
// rest of "-psecret", a whole "---x=secret", a refused value) so that
// they name the flag only: a secret may have been typed into the command
// line by mistake. Other errors are returned as they are.
func FlagError(err error) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "unknown shorthand flag: "), strings.HasPrefix(msg, "flag needs an argument: '"):
		if i := strings.Index(msg, " in -"); i >= 0 {
			return errors.New(msg[:i])
		}
	case strings.HasPrefix(msg, "bad flag syntax: "):
		return errors.New("bad flag syntax: want --name=value, --name value or -n")
	case strings.HasPrefix(msg, "invalid argument "):
		if m := invalidArgument.FindStringSubmatch(msg); m != nil {
			return fmt.Errorf("%w: %s: the value does not parse", ErrBadFlag, m[1])
		}
	}
	return err
}

// invalidArgument is pflag's error for a value its own flag types refuse.
var invalidArgument = regexp.MustCompile(`^invalid argument .* for "([^"]+)" flag: `)
