package config

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/dotenv"
	"github.com/keygate/keygate/internal/placeholder"
	"github.com/keygate/keygate/internal/readfile"
	"github.com/keygate/keygate/internal/suggest"
)

// Options say what to load and how to resolve it.
type Options struct {
	// Dir is the config directory (config.d).
	Dir string
	// EnvFiles are dotenv files, in order; a later file overrides an earlier one.
	EnvFiles []string
	// Environ is the process environment (os.Environ form); it wins over env files.
	Environ []string
	// Role is the service role to resolve for; empty means "default".
	Role string
	// ExcludeTags drops every entry that carries any of these tags.
	ExcludeTags []string
	// Lenient leaves values with unset variables or missing ${file:} targets
	// empty instead of failing, for comparing stages whose secrets live in a
	// vault (config diff). Entries with such values are not validated. Never
	// used to serve.
	Lenient bool
	// Verify, if set, is called with the config files and the bundle
	// manifest (nil if the directory has no bundle.json) exactly as read,
	// before anything is parsed; an error refuses the load. Runtime nodes
	// with KEYGATE_BUNDLE_VERIFY_KEY_FILE check the bundle signature here.
	Verify func(files []File, manifest []byte) error
	// Cache, if set, keeps decoded files between loads (see Cache). The
	// result is exactly that of a load without it.
	Cache *Cache
	// FileDirs, if set, are the only directories ${file:PATH} may read
	// from (KEYGATE_FILE_DIRS): a path outside every one of them, once
	// its variables are known, is an error whether or not it is read.
	FileDirs []string
	// NoFileReads leaves every ${file:} target unread and unresolved, as
	// Lenient leaves a vault's variables: the admin node checks bundles
	// this way, since the targets are the runtime nodes' secrets and
	// reading them on the admin host would let a bundle read its files.
	// Requires Lenient.
	NoFileReads bool
}

// errNotRead marks a ${file:} target that NoFileReads left unread.
var errNotRead = errors.New("not read on this node")

// ManifestName is the bundle manifest's file name in a config directory.
// It is JSON, not YAML, so the loader never reads it as configuration.
const ManifestName = "bundle.json"

// DefaultRole is the service role of a node that names none.
const DefaultRole = "default"

// Section names, in the order they are rendered.
var sectionNames = []string{"schema", "service-roles", "zones", "data-sources", "keys", "profiles", "clients"}

// entrySection is how a section of named entries (every section but
// schema) is read: a file's part of it is decoded into entry records, and
// each record is merged into the section's map of the raw config.
type entrySection struct {
	decode func(*fileDecode, *decoder, string, *yaml.Node)
	merge  func(*loader, *entryRec)
}

// sectionOf is the entrySection of entries of type T, kept in the map of
// the raw config that entries returns.
func sectionOf[T any, PT interface {
	*T
	entry
}](entries func(*Entries) map[string]PT) entrySection {
	return entrySection{
		decode: decodeSection[T, PT],
		merge:  func(l *loader, r *entryRec) { mergeEntry(l, r, entries(&l.raw)) },
	}
}

var entrySections = map[string]entrySection{
	"service-roles": sectionOf(func(e *Entries) map[string]*ServiceRole { return e.ServiceRoles }),
	"zones":         sectionOf(func(e *Entries) map[string]*Zone { return e.Zones }),
	"data-sources":  sectionOf(func(e *Entries) map[string]*DataSource { return e.DataSources }),
	"keys":          sectionOf(func(e *Entries) map[string]*Key { return e.Keys }),
	"profiles":      sectionOf(func(e *Entries) map[string]*Profile { return e.Profiles }),
	"clients":       sectionOf(func(e *Entries) map[string]*Client { return e.Clients }),
}

// Load reads, resolves and validates a configuration for one service role.
// It is pure apart from reading files: the runtime watcher, the CLI and the
// admin node all call it. On failure the error is an Errors with every
// problem found.
func Load(opts Options) (*Snapshot, error) {
	l := newLoader(opts)
	return l.load()
}

type loader struct {
	opts    Options
	errs    Errors
	vars    map[string]string // env files, then process env over them
	envKey  [32]byte          // SHA-256 of the env files and environment
	read    map[string][]byte // ${file:} targets read, by path
	hashIn  []hashInput
	schema  int
	schemaP Position
	raw     rawConfig
	// missing variables per entry ("clients/web-app"); reported only for
	// entries the role uses.
	missing map[string][]missingVar
	// dropped entries ("profiles/x") and why, for reference errors.
	dropped map[string]string
	// excluded are the dropped entries that carry an excluded tag: a
	// service role leaves such a profile out rather than fail.
	excluded map[string]bool
	// broken entries could not be decoded at all; they are not checked.
	broken map[string]bool
	// used reports whether the role uses an entry ("clients/web-app").
	used func(key string) bool
	// recs are the decoded records of the entries in raw, by key
	// ("clients/web-app"); cur is the one being validated.
	recs map[string]map[string]*entryRec // section → name → record
	cur  *entryRec
	// global, if set, holds the positions and failed paths of all entries
	// in one map (entry names with '.'); validation looks there.
	global *globalPaths
	// refOK caches references found good during validation.
	refOK     map[refKey]bool
	lastRefOK refKey
	// deps, while a file is decoded, records what its expansion consults.
	deps *fileDecode
	// total is what the load has read so far, against readfile.MaxTotal.
	total int
}

// rawConfig is every decoded entry, before filtering and resolution.
type rawConfig = Entries

type hashInput struct {
	kind, path string
	data       []byte
}

func newLoader(opts Options) *loader {
	if opts.Role == "" {
		opts.Role = DefaultRole
	}
	return &loader{
		opts:     opts,
		recs:     map[string]map[string]*entryRec{},
		vars:     map[string]string{},
		read:     map[string][]byte{},
		missing:  map[string][]missingVar{},
		dropped:  map[string]string{},
		excluded: map[string]bool{},
		used:     func(string) bool { return false },
		broken:   map[string]bool{},
		raw: rawConfig{
			ServiceRoles: map[string]*ServiceRole{},
			Zones:        map[string]*Zone{},
			DataSources:  map[string]*DataSource{},
			Keys:         map[string]*Key{},
			Profiles:     map[string]*Profile{},
			Clients:      map[string]*Client{},
		},
	}
}

func (l *loader) fail(pos Position, path, format string, args ...any) {
	l.errs = append(l.errs, &Error{Pos: pos, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) load() (*Snapshot, error) {
	if c := l.opts.Cache; c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	l.loadEnv()
	files, manifest, err := readDir(l.opts.Dir)
	if err != nil {
		l.fail(Position{File: l.opts.Dir}, "", "%v", err)
		return nil, l.errs.sorted()
	}
	if l.opts.Verify != nil {
		if err := l.opts.Verify(files, manifest); err != nil {
			l.fail(Position{File: l.opts.Dir}, "", "%v", err)
			return nil, l.errs.sorted()
		}
	}
	fileHashes := make([]FileHash, 0, len(files))
	sums := make([][32]byte, len(files))
	for i, f := range files {
		l.total += len(f.Data)
		l.hashIn = append(l.hashIn, hashInput{"config", f.Name, f.Data})
		sums[i] = sha256.Sum256(f.Data)
		fileHashes = append(fileHashes, FileHash{Name: f.Name, SHA256: hex.EncodeToString(sums[i][:])})
	}
	l.decodeFiles(files, sums)
	if manifest != nil {
		l.hashIn = append(l.hashIn, hashInput{"manifest", ManifestName, manifest})
	}
	l.checkSchema(len(files))
	l.filter()
	snap := l.resolve()
	l.validate()
	l.reportMissing()
	if len(l.errs) > 0 {
		return nil, l.errs.sorted()
	}
	snap.Hash, snap.Inputs = l.hash()
	snap.Files, snap.Manifest = fileHashes, manifest
	snap.Unresolved = l.unresolved()
	if manifest != nil {
		var m struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(manifest, &m) == nil {
			snap.BundleVersion = m.Version
		}
	}
	return snap, nil
}

// unresolved lists the values a Lenient load left empty in the entries the
// role uses, sorted by position.
func (l *loader) unresolved() []Unresolved {
	var out []Unresolved
	for key, vars := range l.missing {
		if !l.used(key) {
			continue
		}
		entry := strings.Replace(key, "/", ".", 1)
		for _, v := range vars {
			out = append(out, Unresolved{Entry: entry, Pos: v.Pos, Path: v.Path, Var: v.Name})
		}
	}
	slices.SortFunc(out, func(a, b Unresolved) int {
		return cmp.Or(cmp.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Column, b.Pos.Column), cmp.Compare(a.Var, b.Var))
	})
	return slices.CompactFunc(out, func(a, b Unresolved) bool { return a == b })
}

// loadEnv reads env files, then lays the process environment over them.
// With a cache, the variables are reused while the env files and the
// environment are unchanged (l.vars is then shared: it is never written
// after loadEnv).
func (l *loader) loadEnv() {
	type envRead struct {
		path string
		data []byte
		err  error
	}
	h := sha256.New()
	reads := make([]envRead, len(l.opts.EnvFiles))
	for i, path := range l.opts.EnvFiles {
		data, err := l.readCounted(path, readfile.MaxSecretFile)
		if err != nil {
			err = unwrapPathError(err)
			fmt.Fprintf(h, "E%d\x00%s%d\x00%s", len(path), path, len(err.Error()), err.Error())
		} else {
			fmt.Fprintf(h, "F%d\x00%s%d\x00", len(path), path, len(data))
			h.Write(data)
		}
		reads[i] = envRead{path, data, err}
	}
	for _, kv := range l.opts.Environ {
		fmt.Fprintf(h, "V%d\x00%s", len(kv), kv)
	}
	h.Sum(l.envKey[:0])
	c := l.opts.Cache
	if c != nil && c.env != nil && c.env.key == l.envKey {
		l.vars = c.env.vars
		l.errs = appendCopies(l.errs, c.env.errs)
		for _, r := range reads {
			if r.err == nil {
				l.hashIn = append(l.hashIn, hashInput{"env", r.path, r.data})
			}
		}
		return
	}
	before := len(l.errs)
	for _, r := range reads {
		if r.err != nil {
			l.fail(Position{File: r.path}, "", "read env file: %v", r.err)
			continue
		}
		l.hashIn = append(l.hashIn, hashInput{"env", r.path, r.data})
		vars, err := dotenv.Parse(r.path, r.data)
		for _, msg := range splitJoined(err) {
			l.fail(Position{}, "", "%s", msg)
		}
		for _, v := range vars {
			l.vars[v.Name] = v.Value
		}
	}
	for _, kv := range l.opts.Environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			l.vars[k] = v
		}
	}
	if c != nil {
		c.env = &envCache{key: l.envKey, vars: l.vars, errs: slices.Clone(l.errs[before:])}
	}
}

// envCache is the variables of one set of env files and environment.
type envCache struct {
	key  [32]byte
	vars map[string]string
	errs Errors
}

func (l *loader) lookup(name string) (string, bool) {
	v, ok := l.vars[name]
	if l.deps != nil {
		l.deps.vars[name] = varDep{v, ok}
	}
	return v, ok
}

// readTarget reads a ${file:PATH} target within the load's limits and
// the allowed directories.
func (l *loader) readTarget(path string) ([]byte, error) {
	if err := checkFileDir(path, l.opts.FileDirs); err != nil {
		return nil, err
	}
	if l.opts.NoFileReads {
		return nil, errNotRead
	}
	return l.readCounted(path, readfile.MaxSecretFile)
}

// errOutsideFileDirs: a ${file:} path outside Options.FileDirs.
var errOutsideFileDirs = errors.New("is outside the directories KEYGATE_FILE_DIRS allows")

// checkFileDir refuses a path that is not inside one of dirs (after
// cleaning, so "/run/secrets/../../etc/shadow" is outside). No dirs: any
// path. Relative paths are taken from the working directory.
func checkFileDir(path string, dirs []string) error {
	if len(dirs) == 0 {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		dabs, err := filepath.Abs(d)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(dabs, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && rel != "." {
			return nil
		}
	}
	return errOutsideFileDirs
}

// readCounted reads a file and counts it against readfile.MaxTotal for the
// whole load, so many files each under their own cap cannot add up to an
// out-of-memory crash.
func (l *loader) readCounted(path string, limit int64) ([]byte, error) {
	data, err := readfile.Read(path, limit)
	if err != nil {
		return nil, err
	}
	l.total += len(data)
	if l.total > readfile.MaxTotal {
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: the configuration reads more than %s in all",
			readfile.ErrTooLarge, readfile.Size(readfile.MaxTotal))}
	}
	return data, nil
}

// readFile reads a ${file:PATH} target once per load and records it for the hash.
func (l *loader) readFile(path string) ([]byte, error) {
	if data, ok := l.read[path]; ok {
		if l.deps != nil {
			if _, seen := l.deps.files[path]; !seen {
				l.deps.files[path] = fileDep{sum: sha256.Sum256(data)}
			}
		}
		return data, nil
	}
	data, err := l.readTarget(path)
	if err != nil {
		err = unwrapPathError(err)
		if l.deps != nil {
			l.deps.files[path] = fileDep{err: err.Error()}
		}
		return nil, err
	}
	l.read[path] = data
	if l.deps != nil {
		l.deps.files[path] = fileDep{sum: sha256.Sum256(data)}
	}
	return data, nil
}

func (l *loader) expand(s string) (placeholder.Result, error) {
	res, err := placeholder.Expand(s, l.lookup, l.readFile)
	var fe *placeholder.FileError
	if l.opts.Lenient && errors.As(err, &fe) && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotRead)) {
		// A stage's ${file:} secrets live in its vault, not on this machine:
		// leave the value empty, like an unset variable.
		return placeholder.Result{Missing: append(res.Missing, "file:"+fe.Path)}, nil
	}
	return res, err
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// fileDecode is what decoding one config file produced, independent of
// every other file: errors outside entries, schema declarations and entries
// in document order, and what its placeholder expansion consulted. With an
// Options.Cache it is reused while the file's bytes and everything it
// consulted are unchanged; it is never written once decoded (entries are
// copied before validation, which applies defaults).
type fileDecode struct {
	sum     [32]byte
	lenient bool
	envKey  [32]byte           // of the variables it was decoded (or last checked) with
	vars    map[string]varDep  // variables the expansion looked up
	files   map[string]fileDep // ${file:} targets it read
	top     sink               // errors outside entries
	items   []fileItem
	cached  bool // decoded for a cache
	// dotted: a section key contains '.', so key paths of different
	// entries may coincide ("a" + ".b" and "a.b"); see loader.global.
	dotted bool
}

type varDep struct {
	val string
	ok  bool
}

type fileDep struct {
	sum [32]byte
	err string
}

// fileItem is a schema declaration or an entry.
type fileItem struct {
	schema *schemaItem
	ent    *entryRec
}

type schemaItem struct {
	ok      bool // decoded without error
	version int
	pos     Position
}

// entryRec is one decoded entry with what decoding it produced.
type entryRec struct {
	sink
	section, name string
	key, path     string // "clients/web-app", "clients.web-app"
	keyPos        Position
	val           entry // decoded, never written afterwards
	missing       []missingVar
	broken        bool
	// The entry-local checks of a client, done once per decoded entry:
	// the validated copy (defaults applied) and the errors found.
	checked    bool
	client     *Client
	clientErrs Errors
}

// Cache keeps decoded config files across loads (the reloader keeps one
// for the node's life), so a reload after a small file changed does not
// parse and decode the unchanged ones again. Safe for concurrent loads;
// files no longer in the directory are dropped after each load.
type Cache struct {
	mu    sync.Mutex
	files map[string]*fileDecode // by file name
	env   *envCache
}

// NewCache returns an empty cache for Options.Cache.
func NewCache() *Cache { return &Cache{files: map[string]*fileDecode{}} }

// decodeFiles decodes (or takes from the cache) every file and merges
// their entries in file order.
func (l *loader) decodeFiles(files []File, sums [][32]byte) {
	c := l.opts.Cache
	fds := make([]*fileDecode, len(files))
	for i, f := range files {
		var sum [32]byte
		if sums != nil {
			sum = sums[i]
		} else if c != nil {
			sum = sha256.Sum256(f.Data)
		}
		if c != nil {
			if fd := c.files[f.Name]; fd != nil && fd.sum == sum && l.depsUnchanged(fd) {
				fds[i] = fd
				continue
			}
		}
		fd := l.decodeFile(f)
		fd.sum = sum
		if c != nil {
			c.files[f.Name] = fd
		}
		fds[i] = fd
	}
	if c != nil {
		names := make(map[string]bool, len(files))
		for _, f := range files {
			names[f.Name] = true
		}
		for name := range c.files {
			if !names[name] {
				delete(c.files, name)
			}
		}
	}
	for _, fd := range fds {
		if fd.dotted {
			l.global = &globalPaths{pos: map[string]Position{}, failed: map[string]bool{}, expanded: map[string]string{}}
		}
	}
	// Size the maps for what is coming: growing a 10,000-entry map costs
	// as much as filling it.
	counts := map[string]int{}
	for _, fd := range fds {
		for _, it := range fd.items {
			if it.ent != nil {
				counts[it.ent.section]++
			}
		}
	}
	for _, section := range sectionNames[1:] {
		l.recs[section] = make(map[string]*entryRec, counts[section])
	}
	if n := counts["clients"]; n > len(l.raw.Clients) && len(l.raw.Clients) == 0 {
		l.raw.Clients = make(map[string]*Client, n)
	}
	for _, fd := range fds {
		l.merge(fd)
	}
}

// depsUnchanged reports whether every variable and ${file:} target a cached
// file's expansion consulted is as it was; if so, the targets it read are
// recorded as read by this load (for the hash and Inputs).
func (l *loader) depsUnchanged(fd *fileDecode) (unchanged bool) {
	if fd.lenient != l.opts.Lenient {
		return false
	}
	varsChecked := false
	if fd.envKey != l.envKey {
		for name, d := range fd.vars {
			if v, ok := l.vars[name]; ok != d.ok || v != d.val {
				return false
			}
		}
		varsChecked = true
	}
	var pending map[string][]byte
	// A file decoded again reads its targets again: what this check read
	// does not count against the load's total unless it is kept.
	total := l.total
	defer func() {
		if !unchanged {
			l.total = total
		}
	}()
	for path, d := range fd.files {
		data, ok := l.read[path]
		if !ok {
			var err error
			if data, err = l.readTarget(path); err != nil {
				if d.err != unwrapPathError(err).Error() {
					return false
				}
				continue
			}
		}
		if d.err != "" || sha256.Sum256(data) != d.sum {
			return false
		}
		if !ok {
			if pending == nil {
				pending = map[string][]byte{}
			}
			pending[path] = data
		}
	}
	for path, data := range pending {
		l.read[path] = data
	}
	if varsChecked {
		fd.envKey = l.envKey // the variables it uses are the same under this environment
	}
	return true
}

func (l *loader) decodeFile(f File) *fileDecode {
	fd := &fileDecode{lenient: l.opts.Lenient, envKey: l.envKey, vars: map[string]varDep{}, files: map[string]fileDep{}}
	if l.opts.Cache != nil {
		fd.cached = true
		l.deps = fd // only a cached decode needs to know what it consulted
		defer func() { l.deps = nil }()
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(string(f.Data)))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return fd // an empty file contributes nothing
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		pos := Position{File: f.Name}
		if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
			pos.Line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		fd.top.errs = append(fd.top.errs, &Error{Pos: pos, Msg: "invalid YAML: " + msg})
		return fd
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		fd.top.errs = append(fd.top.errs, &Error{Pos: Position{File: f.Name, Line: extra.Line, Column: extra.Column},
			Msg: "a file holds one YAML document; move this one to its own file"})
	}
	root := doc.Content[0]
	fd.top.file = f.Name
	d := &decoder{file: f.Name, expand: l.expand, s: &fd.top}
	if isNull(root) {
		return fd
	}
	if limit, ok := aliasLimit(root); !ok {
		d.errorf(root, "", "YAML aliases (*name) expand this file to more than %d values; write the values out", limit)
		return fd
	}
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "the top level must be a mapping of sections (%s), got %s",
			strings.Join(sectionNames, ", "), kindName(root))
		return fd
	}
	d.pairs(root, "", func(section string, k, v *yaml.Node) {
		switch es, ok := entrySections[section]; {
		case section == "schema":
			var discard []missingVar
			d.missing = &discard
			decodeSchema(fd, d, v)
		case ok:
			es.decode(fd, d, section, v)
		default:
			msg := fmt.Sprintf("unknown section %q", section)
			if s, ok := suggest.Closest(section, sectionNames); ok {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.errorf(k, "", "%s (sections: %s)", msg, strings.Join(sectionNames, ", "))
		}
	})
	return fd
}

func decodeSchema(fd *fileDecode, d *decoder, v *yaml.Node) {
	var version int
	before := len(d.s.errs)
	d.value(v, "schema", reflect.ValueOf(&version).Elem())
	fd.items = append(fd.items, fileItem{schema: &schemaItem{ok: len(d.s.errs) == before, version: version, pos: d.position(v)}})
}

// applySchema merges one schema declaration, in file order.
func (l *loader) applySchema(s *schemaItem) {
	if !s.ok {
		return
	}
	switch {
	case l.schema == 0:
		l.schema, l.schemaP = s.version, s.pos
	case l.schema != s.version:
		l.fail(s.pos, "schema", "schema %d disagrees with schema %d at %s", s.version, l.schema, l.schemaP.lineRef())
	}
}

// entry is implemented by every named section entry (through Meta).
type entry interface{ meta() *Meta }

func (m *Meta) meta() *Meta { return m }

// decodeSection decodes one file's part of a section into entry records;
// merge puts them into the section's map.
func decodeSection[T any, PT interface {
	*T
	entry
}](fd *fileDecode, d *decoder, section string, n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, section, "must be a mapping of named entries, got %s", kindName(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && strings.Contains(k.Value, ".") {
			fd.dotted = true
		}
	}
	top, f, cached := d.s, d.file, fd.cached
	d.pairs(n, section, func(name string, k, v *yaml.Node) {
		path := join(section, name)
		if !d.validName(k, section, name) {
			return
		}
		e := PT(new(T))
		r := &entryRec{section: section, name: name, key: section + "/" + name, path: path, keyPos: d.position(k)}
		r.file, r.pos = f, make([]posRec, 0, 16)
		d.s = &r.sink
		d.missing = &r.missing
		d.value(v, path, reflect.ValueOf(e).Elem())
		d.s = top
		// Not even a mapping: its one error says so; checking its keys
		// would only add noise. It still exists for references.
		r.broken = r.failed[path]
		m := e.meta()
		m.Name, m.Pos = name, r.keyPos
		r.pos = append(r.pos, posRec{path, int32(k.Line), int32(k.Column)}) // errors about a whole entry point at its name
		if cached {
			r.pos = slices.Clone(r.pos) // kept: no spare capacity
		}
		r.val = e
		fd.items = append(fd.items, fileItem{ent: r})
	})
}

// globalPaths are the value positions and failed key paths of every entry
// in one map, as if all entries were one tree: used when entry names contain
// '.', so the paths of one entry can be those of another.
type globalPaths struct {
	pos      map[string]Position
	failed   map[string]bool
	expanded map[string]string
}

// merge adds one file's errors, schema declarations and entries, in file
// order; a name defined twice cites both places.
func (l *loader) merge(fd *fileDecode) {
	l.errs = appendCopies(l.errs, fd.top.errs)
	if l.global != nil {
		// Outside entries, only a name set twice in one file is failed at
		// an entry's path, and only after that entry: add them last.
		defer func() {
			for p := range fd.top.failed {
				l.global.failed[p] = true
			}
		}()
	}
	for _, it := range fd.items {
		if it.schema != nil {
			l.applySchema(it.schema)
			continue
		}
		if es, ok := entrySections[it.ent.section]; ok {
			es.merge(l, it.ent)
		}
	}
}

func mergeEntry[T any, PT interface {
	*T
	entry
}](l *loader, r *entryRec, into map[string]PT) {
	if prev, dup := into[r.name]; dup {
		l.fail(r.keyPos, r.path, "already defined at %s", prev.meta().Pos.lineRef())
		if l.global != nil {
			l.global.failed[r.path] = true
		}
		return
	}
	l.errs = appendCopies(l.errs, r.errs)
	broken := r.broken
	if g := l.global; g != nil {
		for p := range r.failed {
			g.failed[p] = true
		}
		for _, p := range r.pos {
			g.pos[p.path] = r.position(p)
		}
		for p, raw := range r.expanded {
			g.expanded[p] = raw
		}
		broken = g.failed[r.path]
	}
	if broken {
		l.broken[r.key] = true
	}
	if len(r.missing) > 0 {
		l.missing[r.key] = r.missing
	}
	l.recs[r.section][r.name] = r
	if r.checked && l.global == nil {
		into[r.name] = any(r.client).(PT) // validated once, shared read-only
		return
	}
	if l.opts.Cache == nil {
		into[r.name] = r.val.(PT) // nobody else sees the record
		return
	}
	e := PT(new(T))
	*e = *r.val.(PT) // validation applies defaults to the copy
	if p, ok := any(e).(*Profile); ok && p.Authenticators != nil {
		// Authenticators are entries too: copy them, so that defaults
		// applied to them never reach the cached record.
		auth := make(map[string]*Authenticator, len(p.Authenticators))
		for name, a := range p.Authenticators {
			c := *a
			auth[name] = &c
		}
		p.Authenticators = auth
	}
	into[r.name] = e
}

// appendCopies appends copies of errs, so callers of Load never share an
// Error with the cache.
func appendCopies(to, errs Errors) Errors {
	for _, e := range errs {
		c := *e
		to = append(to, &c)
	}
	return to
}

func (l *loader) checkSchema(files int) {
	switch {
	case files == 0:
		l.fail(Position{File: l.opts.Dir}, "", "no *.yaml or *.yml files in the config directory")
	case l.schema == 0 && !slices.ContainsFunc(l.errs, func(e *Error) bool { return e.Path == "schema" }):
		l.fail(Position{File: l.opts.Dir}, "schema", "no file declares the schema version; add `schema: %d` to one file", SchemaVersion)
	case l.schema > SchemaVersion:
		l.fail(l.schemaP, "schema", "schema %d is newer than this keygate understands (it supports %s); upgrade keygate first",
			l.schema, supportedList())
	case l.schema != 0 && !slices.Contains(SupportedSchemas, l.schema):
		l.fail(l.schemaP, "schema", "schema %d is not supported (this keygate supports %s)", l.schema, supportedList())
	}
}

func supportedList() string {
	s := make([]string, len(SupportedSchemas))
	for i, v := range SupportedSchemas {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ", ")
}

// filter drops entries with enabled: false or an excluded tag, remembering why
// so a reference to one explains itself.
func (l *loader) filter() {
	filterSection(l, "service-roles", l.raw.ServiceRoles)
	filterSection(l, "zones", l.raw.Zones)
	filterSection(l, "data-sources", l.raw.DataSources)
	filterSection(l, "keys", l.raw.Keys)
	filterSection(l, "profiles", l.raw.Profiles)
	filterSection(l, "clients", l.raw.Clients)
}

func filterSection[PT entry](l *loader, section string, m map[string]PT) {
	for name, e := range m {
		meta := e.meta()
		reason := ""
		if meta.Enabled != nil && !*meta.Enabled {
			reason = "it is disabled (enabled: false)"
		} else if i := slices.IndexFunc(meta.Tags, func(t string) bool { return slices.Contains(l.opts.ExcludeTags, t) }); i >= 0 {
			reason = fmt.Sprintf("it carries the excluded tag %q (KEYGATE_EXCLUDE_TAGS)", meta.Tags[i])
			l.excluded[section+"/"+name] = true
		}
		if reason != "" {
			delete(m, name)
			l.dropped[section+"/"+name] = reason
			delete(l.missing, section+"/"+name)
		}
	}
}

// hash is the content hash over every input and the list of non-config inputs.
func (l *loader) hash() (string, []string) {
	for path, data := range l.read {
		l.hashIn = append(l.hashIn, hashInput{"file", path, data})
	}
	return hashInputs(l.hashIn), inputPaths(l.hashIn)
}

// hashInputs hashes inputs in a canonical order whatever order they were
// read in: config files by name, the bundle manifest, env files in the order
// given, ${file:} targets by path.
func hashInputs(in []hashInput) string {
	rank := map[string]int{"config": 0, "manifest": 1, "env": 2, "file": 3}
	files := slices.Clone(in)
	slices.SortStableFunc(files, func(a, b hashInput) int {
		if c := cmp.Compare(rank[a.kind], rank[b.kind]); c != 0 || a.kind != "file" {
			return c
		}
		return cmp.Compare(a.path, b.path)
	})
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00", f.kind, f.path, len(f.data))
		h.Write(f.data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func inputPaths(in []hashInput) []string {
	var paths []string
	for _, f := range in {
		if f.kind != "config" && f.kind != "manifest" {
			paths = append(paths, f.path)
		}
	}
	slices.Sort(paths)
	return slices.Compact(paths)
}

// Fingerprint recomputes the content hash of a config directory, its env files
// and the ${file:} targets of an earlier snapshot, without parsing. If it
// equals that snapshot's Hash, nothing it read has changed.
func Fingerprint(dir string, envFiles []string, prev *Snapshot) (string, error) {
	files, manifest, err := readDir(dir)
	if err != nil {
		return "", err
	}
	var in []hashInput
	for _, f := range files {
		in = append(in, hashInput{"config", f.Name, f.Data})
	}
	if manifest != nil {
		in = append(in, hashInput{"manifest", ManifestName, manifest})
	}
	for _, path := range envFiles {
		data, err := readfile.Read(path, readfile.MaxSecretFile)
		if err != nil {
			return "", err
		}
		in = append(in, hashInput{"env", path, data})
	}
	if prev != nil {
		for _, path := range prev.Inputs {
			if slices.Contains(envFiles, path) {
				continue
			}
			data, err := readfile.Read(path, readfile.MaxSecretFile)
			if err != nil {
				return "", err
			}
			in = append(in, hashInput{"file", path, data})
		}
	}
	return hashInputs(in), nil
}

// File is one config file as read.
type File struct {
	Name string // base name, as used in error positions
	Path string
	Data []byte
}

// ReadDir reads every *.yaml and *.yml entry directly in dir, in lexical
// order. Hidden entries (.-prefixed, including Kubernetes' ..data and
// ..2026_… folders) are skipped; symlinks are followed, so the files of a
// ConfigMap volume (name → ..data/name) are read through the current ..data.
//
// In that layout the files are read from the directory ..data points to,
// resolved once, so a read that races a swap sees one version whole, never
// a mix of two (and a file the new version drops is simply absent).
func ReadDir(dir string) ([]File, error) {
	files, _, err := readDir(dir)
	return files, err
}

// readDir is ReadDir that also returns the bundle manifest (bundle.json)
// read from the same resolved directory, or nil if there is none.
func readDir(dir string) ([]File, []byte, error) {
	readFrom := dir
	if target, err := filepath.EvalSymlinks(filepath.Join(dir, "..data")); err == nil {
		if info, err := os.Stat(target); err == nil && info.IsDir() {
			readFrom = target
		}
	}
	entries, err := os.ReadDir(readFrom)
	if err != nil {
		return nil, nil, fmt.Errorf("read config directory: %w", unwrapPathError(err))
	}
	var files []File
	var manifest []byte
	total := 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if name == ManifestName {
			data, err := readfile.Read(filepath.Join(readFrom, name), readfile.MaxSecretFile)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", name, unwrapPathError(err))
			}
			manifest = data
			continue
		}
		if ext := filepath.Ext(name); ext != ".yaml" && ext != ".yml" {
			continue
		}
		path := filepath.Join(readFrom, name)
		info, err := os.Stat(path) // follows symlinks
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, unwrapPathError(err))
		}
		if !info.Mode().IsRegular() {
			continue // a directory named x.yaml is not a config file
		}
		data, err := readfile.Read(path, readfile.MaxConfigFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, unwrapPathError(err))
		}
		total += len(data)
		if total > readfile.MaxTotal {
			return nil, nil, fmt.Errorf("the config files hold more than %s in all", readfile.Size(readfile.MaxTotal))
		}
		files = append(files, File{Name: name, Path: path, Data: data})
	}
	return files, manifest, nil // os.ReadDir sorts by name
}

// unwrapPathError drops the *PathError wrapper so messages name the path once.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// splitJoined returns each line of an errors.Join error.
func splitJoined(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// Roles lists the enabled service roles of a configuration, for
// `config validate --all-roles`; errors are left for Load to report per role.
func Roles(opts Options) ([]string, error) {
	l := newLoader(opts)
	files, err := ReadDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	if c := l.opts.Cache; c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	l.loadEnv()
	l.decodeFiles(files, nil)
	l.filter()
	if len(l.raw.ServiceRoles) == 0 {
		return nil, fmt.Errorf("%s: no service roles defined", opts.Dir)
	}
	return sortedKeys(l.raw.ServiceRoles), nil
}

// RequiredVariables returns, sorted and once each, the variables the given
// service role needs without a default: it loads with no environment and no
// env files in Lenient mode and lists the missing variables of the entries
// the role uses. ${file:PATH} targets are not read (NoFileReads); they are
// not variables and are not listed (a variable inside PATH is). Structural
// errors, and paths outside opts.FileDirs, are returned as from Load.
func RequiredVariables(opts Options) ([]string, error) {
	opts.Environ, opts.EnvFiles, opts.Lenient, opts.NoFileReads, opts.Verify = nil, nil, true, true, nil
	l := newLoader(opts)
	if _, err := l.load(); err != nil {
		return nil, err
	}
	var names []string
	for key, vars := range l.missing {
		if !l.used(key) {
			continue
		}
		for _, v := range vars {
			if !strings.HasPrefix(v.Name, "file:") {
				names = append(names, v.Name)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
