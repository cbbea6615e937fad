// Package gitback carries a configuration change made on the admin node
// back to the configuration's git repository as a reviewable commit on a
// new branch, never onto the main branch: the repository stays the source
// of truth, and a change reaches nodes only through review, merge and
// publish. It also reads the main branch's head, so the console can show
// drift between what is published and what is merged.
//
// Each call clones the base branch into memory (depth 1), so the admin
// node keeps no working copy that could go stale or be left half-written.
package gitback

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5/memfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/keygate/keygate/internal/readfile"
)

// Config is where the repository is and how to reach it.
type Config struct {
	// URL of the remote: file:///srv/git/config.git, ssh://git@host/org/repo.git
	// or https://host/org/repo.git.
	URL string
	// Base is the branch changes start from and are proposed against
	// (default main).
	Base string
	// Dir is the configuration directory inside the repository (default
	// config.d).
	Dir string
	// BranchPrefix names new branches: <prefix><user>-<time>-<random>
	// (default keygate/).
	BranchPrefix string
	// CompareURL, optional, is a template for the review link:
	// {base} and {branch} are replaced, e.g.
	// https://github.com/acme/iam-config/compare/{base}...{branch}?expand=1
	CompareURL string
	// Credentials: for HTTPS a user name and a token file; for SSH a
	// private key file (and its known_hosts through the environment, as
	// git does).
	Username      string
	TokenFile     string
	SSHKeyFile    string
	Timeout       time.Duration // per call, default 30s
	MaxRepoFiles  int           // files read from Dir, default 1000
	MaxFileBytesN int64         // per file, default readfile.MaxConfigFile
}

// Writer proposes changes to one repository.
type Writer struct{ c Config }

// New checks the configuration.
func New(c Config) (*Writer, error) {
	if c.URL == "" {
		return nil, errors.New("no repository URL")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "file" && u.Scheme != "ssh" && u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("the repository URL must be file://, ssh:// or https://")
	}
	if c.Base == "" {
		c.Base = "main"
	}
	if c.Dir == "" {
		c.Dir = "config.d"
	}
	if c.BranchPrefix == "" {
		c.BranchPrefix = "keygate/"
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.MaxRepoFiles == 0 {
		c.MaxRepoFiles = 1000
	}
	if c.MaxFileBytesN == 0 {
		c.MaxFileBytesN = readfile.MaxConfigFile
	}
	return &Writer{c: c}, nil
}

// Author is who a commit is by.
type Author struct{ Name, Email string }

// Proposal is a pushed branch.
type Proposal struct {
	Branch     string
	Commit     string
	CompareURL string // "" without Config.CompareURL
	// Files are the changed files' new contents, by name in Dir.
	Files map[string][]byte
}

// Head is the base branch's configuration directory.
type Head struct {
	Commit string
	Files  map[string][]byte // *.yaml / *.yml directly in Dir
}

func (w *Writer) auth() (transport.AuthMethod, error) {
	switch {
	case strings.HasPrefix(w.c.URL, "file://"):
		return nil, nil
	case w.c.SSHKeyFile != "":
		a, err := ssh.NewPublicKeysFromFile("git", w.c.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("ssh key: %w", errors.Unwrap(err))
		}
		return a, nil
	case w.c.TokenFile != "":
		tok, err := readfile.Read(w.c.TokenFile, readfile.MaxSecretFile)
		if err != nil {
			return nil, fmt.Errorf("git token file: %w", err)
		}
		return &http.BasicAuth{Username: cmpOr(w.c.Username, "keygate"), Password: strings.TrimSpace(string(tok))}, nil
	}
	return nil, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// clone fetches the base branch into memory.
func (w *Writer) clone(ctx context.Context) (*git.Repository, *git.Worktree, error) {
	auth, err := w.auth()
	if err != nil {
		return nil, nil, err
	}
	repo, err := git.CloneContext(ctx, memory.NewStorage(), memfs.New(), &git.CloneOptions{
		URL: w.c.URL, Auth: auth, ReferenceName: plumbing.NewBranchReferenceName(w.c.Base),
		SingleBranch: true, Depth: 1, Tags: git.NoTags,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("clone %s of the configuration repository: %w", w.c.Base, describe(err))
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, nil, err
	}
	return repo, wt, nil
}

// describe keeps a git error free of the URL's credentials.
func describe(err error) error {
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return errors.New("the repository refused the credentials")
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return errors.New("repository not found")
	case errors.Is(err, plumbing.ErrReferenceNotFound):
		return errors.New("branch not found")
	}
	if msg := err.Error(); !strings.Contains(msg, "://") && !strings.Contains(msg, "@") {
		return errors.New(msg)
	}
	return errors.New("the repository cannot be reached")
}

// ReadHead returns the base branch's configuration files.
func (w *Writer) ReadHead(ctx context.Context) (*Head, error) {
	ctx, cancel := context.WithTimeout(ctx, w.c.Timeout)
	defer cancel()
	repo, wt, err := w.clone(ctx)
	if err != nil {
		return nil, err
	}
	ref, err := repo.Head()
	if err != nil {
		return nil, err
	}
	files, err := w.readDir(wt)
	if err != nil {
		return nil, err
	}
	return &Head{Commit: ref.Hash().String(), Files: files}, nil
}

func (w *Writer) readDir(wt *git.Worktree) (map[string][]byte, error) {
	entries, err := wt.Filesystem.ReadDir(w.c.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s in the repository: %w", w.c.Dir, err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || (path.Ext(name) != ".yaml" && path.Ext(name) != ".yml") {
			continue
		}
		if len(out) == w.c.MaxRepoFiles {
			return nil, fmt.Errorf("%s holds more than %d files", w.c.Dir, w.c.MaxRepoFiles)
		}
		if e.Size() > w.c.MaxFileBytesN {
			return nil, fmt.Errorf("%s/%s is larger than %d bytes", w.c.Dir, name, w.c.MaxFileBytesN)
		}
		f, err := wt.Filesystem.Open(path.Join(w.c.Dir, name))
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(f, w.c.MaxFileBytesN+1))
		f.Close()
		if err != nil {
			return nil, err
		}
		out[name] = data
	}
	return out, nil
}

// ErrMoved: the base branch is no longer at the commit a change was made
// against.
var ErrMoved = errors.New("the configuration repository changed since the change was made; make it again on the current version")

// Propose commits change to a new branch off the base and pushes it.
// change receives the configuration files by name and returns the ones it
// changed (new or edited; a file it does not return is untouched). With
// at (a commit), the base branch must still be there (ErrMoved). Nothing
// is pushed when change returns an error or changes nothing.
func (w *Writer) Propose(ctx context.Context, by Author, message, at string, change func(files map[string][]byte) (map[string][]byte, error)) (*Proposal, error) {
	if by.Name == "" || by.Email == "" {
		return nil, errors.New("a commit needs the author's name and e-mail")
	}
	ctx, cancel := context.WithTimeout(ctx, w.c.Timeout)
	defer cancel()
	repo, wt, err := w.clone(ctx)
	if err != nil {
		return nil, err
	}
	if at != "" {
		if ref, err := repo.Head(); err != nil || ref.Hash().String() != at {
			return nil, ErrMoved
		}
	}
	files, err := w.readDir(wt)
	if err != nil {
		return nil, err
	}
	changed, err := change(files)
	if err != nil {
		return nil, err
	}
	var names []string
	for name, data := range changed {
		if name != path.Base(name) || strings.HasPrefix(name, ".") {
			return nil, fmt.Errorf("%q is not a file name in %s", name, w.c.Dir)
		}
		if old, ok := files[name]; ok && string(old) == string(data) {
			continue
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, errors.New("the change leaves every file as it was")
	}
	slices.Sort(names)
	now := time.Now().UTC()
	// The suffix keeps two changes by one person in one second apart.
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	branch := w.c.BranchPrefix + slug(by.Name) + "-" + now.Format("20060102-150405") + "-" + hex.EncodeToString(suffix[:])
	head, err := repo.Head()
	if err != nil {
		return nil, err
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: head.Hash(), Branch: plumbing.NewBranchReferenceName(branch), Create: true}); err != nil {
		return nil, err
	}
	for _, name := range names {
		p := path.Join(w.c.Dir, name)
		f, err := wt.Filesystem.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		_, werr := f.Write(changed[name])
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, werr
		}
		if _, err := wt.Add(p); err != nil {
			return nil, err
		}
	}
	sig := &object.Signature{Name: by.Name, Email: by.Email, When: now}
	hash, err := wt.Commit(message, &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		return nil, err
	}
	auth, err := w.auth()
	if err != nil {
		return nil, err
	}
	spec := config.RefSpec("refs/heads/" + branch + ":refs/heads/" + branch)
	if err := repo.PushContext(ctx, &git.PushOptions{RemoteName: "origin", RefSpecs: []config.RefSpec{spec}, Auth: auth}); err != nil {
		return nil, fmt.Errorf("push %s: %w", branch, describe(err))
	}
	p := &Proposal{Branch: branch, Commit: hash.String(), Files: map[string][]byte{}}
	for _, name := range names {
		p.Files[name] = changed[name]
	}
	if w.c.CompareURL != "" {
		p.CompareURL = strings.NewReplacer("{base}", url.PathEscape(w.c.Base), "{branch}", url.PathEscape(branch)).Replace(w.c.CompareURL)
	}
	return p, nil
}

// slug keeps a branch name to letters, digits and dashes.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
		if b.Len() >= 32 {
			break
		}
	}
	return cmpOr(strings.Trim(b.String(), "-"), "user")
}
