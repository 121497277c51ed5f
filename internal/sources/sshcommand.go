package sources

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// readSSHSetup is the daemon's ssh setup as OpenSSH's ssh would make it from the environment
// (getenv) and the home directory home ("": none): its defaults, changed by
// GIT_SSH_COMMAND, which git ran through sh with the host and command appended, or by
// GIT_SSH, a program git ran with them. Only ssh itself can be honoured, with the options
// that bear on listing a branch:
//
//   - -i FILE, -o IdentityFile=FILE: the keys to offer, instead of the default ones;
//   - -o IdentitiesOnly=yes: no keys from the ssh agent (SSH_AUTH_SOCK);
//   - -o IdentityAgent=SOCKET|none: the agent's socket;
//   - -o UserKnownHostsFile=FILES, -o GlobalKnownHostsFile=FILES: the known hosts;
//   - -o StrictHostKeyChecking=yes|ask|accept-new|no|off;
//   - -l USER, -o User=USER: the user when the URL names none;
//   - -F /dev/null (or none): no ssh config file (see the README on ~/.ssh/config);
//   - options that do not change what a listing reaches or trusts, which are ignored:
//     -4 -6 -a -A -C -k -n -q -t -T -v -x, -E FILE, BatchMode, LogLevel, ConnectTimeout
//     (the poll's timeout bounds it), and the like (ignoredSSHOptions).
//
// Anything else (another program, -p, ProxyCommand, a config file, sh syntax beyond quotes
// and $VAR) is an error: the daemon would otherwise reach or trust servers in another way
// than the operator set up.
func readSSHSetup(getenv func(string) string, home string) (*sshSetup, error) {
	s := &sshSetup{sshSettings: sshSettings{
		strict: strictYes,
		agent:  getenv("SSH_AUTH_SOCK"),
	}}
	words, err := sshCommandArgs(getenv)
	if err != nil {
		return nil, err
	}
	a := sshArgs{settings: &s.sshSettings, home: home, seen: map[string]bool{}}
	for i := 0; i < len(words); i++ {
		if i, err = a.word(words, i); err != nil {
			return nil, err
		}
	}
	s.defaults(home, a.seen, a.identities, a.identitiesSet)
	return s, nil
}

// sshCommandArgs are ssh's arguments in the daemon's GIT_SSH_COMMAND (none for GIT_SSH,
// or neither): an error unless the program they run is ssh.
func sshCommandArgs(getenv func(string) string) ([]string, error) {
	command, program := getenv("GIT_SSH_COMMAND"), getenv("GIT_SSH")
	if command == "" {
		if program != "" && path.Base(filepath.ToSlash(program)) != "ssh" {
			return nil, ruleErrorf(ErrSSHUnsupported, "the daemon's GIT_SSH is %s: source.poll lists branches in Go and runs no program; use GIT_SSH_COMMAND with ssh's options, or ~/.ssh", program)
		}
		return nil, nil
	}
	words, err := shellWords(command, getenv)
	if err != nil {
		return nil, fmt.Errorf("the daemon's GIT_SSH_COMMAND: %w", err)
	}
	if len(words) == 0 {
		return nil, nil
	}
	if path.Base(filepath.ToSlash(words[0])) != "ssh" {
		return nil, ruleErrorf(ErrSSHUnsupported, "the daemon's GIT_SSH_COMMAND runs %s: source.poll lists branches in Go and can honour ssh's options only (ssh -i KEY -o UserKnownHostsFile=FILE …)", words[0])
	}
	return words[1:], nil
}

// sshArgs reads ssh's arguments into settings, one word (and its value) at a time.
type sshArgs struct {
	settings      *sshSettings
	home          string
	seen          map[string]bool // options set, as ssh keeps the first value of most
	identities    []string        // -i and IdentityFile, in order
	identitiesSet bool            // an -i or IdentityFile was given, if only "none"
}

// word reads words[i], a cluster of flags such as -qTi, and the value of its last flag
// (the rest of the word, or the next word); it returns the index of the last word it read.
func (a *sshArgs) word(words []string, i int) (int, error) {
	arg := words[i]
	if len(arg) < 2 || arg[0] != '-' || arg == "--" {
		return i, ruleErrorf(ErrSSHCommand, "the daemon's GIT_SSH_COMMAND has %q where ssh takes options: git appends the host and the command", arg)
	}
	for j := 1; j < len(arg); j++ {
		flag := arg[j]
		if strings.IndexByte("46aACknqtTvx", flag) >= 0 {
			continue
		}
		value := arg[j+1:]
		if value == "" {
			if i+1 == len(words) {
				return i, ruleErrorf(ErrSSHCommand, "the daemon's GIT_SSH_COMMAND ends with -%c, which takes a value", flag)
			}
			i++
			value = words[i]
		}
		return i, a.flag(flag, value)
	}
	return i, nil
}

// flag applies ssh's flag that takes a value.
func (a *sshArgs) flag(flag byte, value string) error {
	switch flag {
	case 'i':
		a.identities, a.identitiesSet = append(a.identities, expandHome(value, a.home)), true
	case 'l':
		setOnce(a.seen, "user", &a.settings.user, value)
	case 'o':
		key, val := splitSSHOption(value)
		if err := a.settings.option(key, val, a.home, a.seen, &a.identities, &a.identitiesSet); err != nil {
			return fmt.Errorf("the daemon's GIT_SSH_COMMAND: -o %s: %w", value, err)
		}
	case 'F':
		if value != "/dev/null" && value != "none" {
			return ruleErrorf(ErrSSHUnsupported, "the daemon's GIT_SSH_COMMAND: -F %s: source.poll reads no ssh config file: put its settings in GIT_SSH_COMMAND, or use -F /dev/null", value)
		}
	case 'E':
	case 'p':
		return ruleErrorf(ErrSSHUnsupported, "the daemon's GIT_SSH_COMMAND: -p %s: name the port in source.repo instead (ssh://git@host:%s/org/repo.git)", value, value)
	default:
		return ruleErrorf(ErrSSHUnsupported, "the daemon's GIT_SSH_COMMAND: source.poll cannot honour ssh's -%c", flag)
	}
	return nil
}

// defaults fills in what the command left unset as ssh would: the default keys and known
// hosts under home's ~/.ssh (none without a home) and the global known hosts.
func (s *sshSettings) defaults(home string, seen map[string]bool, identities []string, identitiesSet bool) {
	dotSSH := filepath.Join(home, ".ssh")
	if identitiesSet {
		s.identities = identities
	} else if home != "" {
		for _, name := range []string{"id_rsa", "id_ecdsa", "id_ed25519"} {
			s.identities = append(s.identities, filepath.Join(dotSSH, name))
		}
	}
	if !seen["userknownhostsfile"] && home != "" {
		s.userKnownHosts = []string{filepath.Join(dotSSH, "known_hosts"), filepath.Join(dotSSH, "known_hosts2")}
	}
	if !seen["globalknownhostsfile"] {
		s.globalKnownHosts = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	}
}

// ignoredSSHOptions are the ssh options (lower case) that do not change which server a
// listing reaches, how it is trusted or which key logs in, so a poll may ignore them.
var ignoredSSHOptions = map[string]bool{
	"addkeystoagent": true, "batchmode": true, "challengeresponseauthentication": true,
	"checkhostip": true, "clearallforwardings": true, "compression": true, "connectionattempts": true,
	"connecttimeout": true, "controlmaster": true, "controlpath": true, "controlpersist": true,
	"exitonforwardfailure": true, "forwardagent": true, "forwardx11": true, "forwardx11trusted": true,
	"hashknownhosts": true, "kbdinteractiveauthentication": true, "loglevel": true,
	"numberofpasswordprompts": true, "passwordauthentication": true, "requesttty": true,
	"sendenv": true, "serveraliveinterval": true, "serveralivecountmax": true, "tcpkeepalive": true,
	"updatehostkeys": true, "visualhostkey": true,
}

// option applies ssh option key (any case) with value to s.
func (s *sshSettings) option(key, value, home string, seen map[string]bool, identities *[]string, identitiesSet *bool) error {
	k := strings.ToLower(key)
	switch k {
	case "identityfile":
		*identitiesSet = true
		if value != "none" {
			*identities = append(*identities, expandHome(value, home))
		}
	case "identitiesonly", "identityagent", "userknownhostsfile", "globalknownhostsfile", "stricthostkeychecking":
		if seen[k] {
			return nil
		}
		seen[k] = true
		return s.firstValue(k, value, home)
	case "user":
		setOnce(seen, k, &s.user, value)
	case "pubkeyauthentication":
		if strings.ToLower(value) != "yes" {
			return ruleErrorf(ErrSSHUnsupported, "a poll logs in with a public key only")
		}
	case "port":
		return ruleErrorf(ErrSSHUnsupported, "name the port in source.repo instead (ssh://git@host:%s/org/repo.git)", value)
	default:
		if !ignoredSSHOptions[k] {
			return ruleErrorf(ErrSSHUnsupported, "source.poll cannot honour ssh's %s", key)
		}
	}
	return nil
}

// firstValue applies option k (lower case), one of those ssh takes the first value of,
// with value to s.
func (s *sshSettings) firstValue(k, value, home string) error {
	switch k {
	case "identitiesonly":
		switch strings.ToLower(value) {
		case "yes":
			s.identitiesOnly = true
		case "no":
		default:
			return ruleErrorf(ErrSSHCommand, "IdentitiesOnly is yes or no, not %q", value)
		}
	case "identityagent":
		switch value {
		case "none":
			s.agent = ""
		case "SSH_AUTH_SOCK":
		default:
			s.agent = expandHome(value, home)
		}
	case "userknownhostsfile":
		s.userKnownHosts = knownHostsFiles(value, home)
	case "globalknownhostsfile":
		s.globalKnownHosts = knownHostsFiles(value, home)
	case "stricthostkeychecking":
		strict, err := strictHostKeyChecking(value)
		if err != nil {
			return err
		}
		s.strict = strict
	}
	return nil
}

// knownHostsFiles are the files of a known hosts option's value: blank-separated, or none.
func knownHostsFiles(value, home string) []string {
	if value == "none" {
		return nil
	}
	var files []string
	for _, f := range strings.Fields(value) {
		files = append(files, expandHome(f, home))
	}
	return files
}

// strictHostKeyChecking is the check (strictYes, strictAcceptNew, strictNo) that
// StrictHostKeyChecking=value asks for.
func strictHostKeyChecking(value string) (string, error) {
	switch strings.ToLower(value) {
	case "yes", "ask":
		return strictYes, nil
	case "accept-new":
		return strictAcceptNew, nil
	case "no", "off":
		return strictNo, nil
	}
	return "", ruleErrorf(ErrSSHCommand, "StrictHostKeyChecking is yes, ask, accept-new, no or off, not %q", value)
}

// setOnce sets *dst to value unless key was set before: ssh keeps an option's first value.
func setOnce(seen map[string]bool, key string, dst *string, value string) {
	if !seen[key] {
		seen[key] = true
		*dst = value
	}
}

// splitSSHOption splits an -o argument as ssh does: "Key=Value", "Key Value", "Key = Value".
func splitSSHOption(s string) (key, value string) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, "= \t")
	if i < 0 {
		return s, ""
	}
	key, value = s[:i], strings.TrimLeft(s[i:], " \t")
	value = strings.TrimSpace(strings.TrimPrefix(value, "="))
	return key, strings.Trim(value, `"`)
}

// expandHome is file with a leading ~/ (or ~ alone) replaced by home, as ssh expands its
// file options; without a home, file.
func expandHome(file, home string) string {
	if home == "" {
		return file
	}
	if file == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(file, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return file
}

// shellWords splits s into words as sh would for a simple command: blanks separate words,
// '…' and "…" quote, \ escapes, and $NAME and ${NAME} expand to getenv's value (without
// splitting it further), as does a ~ that starts a word. Other sh syntax (pipes, lists,
// redirections, command substitution, globs, comments) is an error: s is not run.
func shellWords(s string, getenv func(string) string) ([]string, error) {
	sp := &shellSplitter{s: s, getenv: getenv}
	for i := 0; i < len(s); {
		var err error
		if i, err = sp.next(i); err != nil {
			return nil, err
		}
	}
	sp.end()
	return sp.words, nil
}

// shellSplitter is shellWords's state: the words so far and the one being read.
type shellSplitter struct {
	s      string
	getenv func(string) string
	words  []string
	w      strings.Builder
	inWord bool // w is a word, if an empty one ("")
}

// next reads the unquoted s[i] and what it starts; it returns the index after them.
func (sp *shellSplitter) next(i int) (int, error) {
	s := sp.s
	switch c := s[i]; {
	case c == ' ' || c == '\t' || c == '\n':
		sp.end()
		return i + 1, nil
	case c == '\'':
		j := strings.IndexByte(s[i+1:], '\'')
		if j < 0 {
			return 0, ruleErrorf(ErrShellSyntax, "an unclosed '")
		}
		sp.w.WriteString(s[i+1 : i+1+j])
		sp.inWord = true
		return i + 1 + j + 1, nil
	case c == '"':
		sp.inWord = true
		return sp.doubleQuoted(i + 1)
	case c == '\\':
		if i+1 == len(s) {
			return 0, ruleErrorf(ErrShellSyntax, `a trailing \`)
		}
		if s[i+1] != '\n' {
			sp.w.WriteByte(s[i+1])
			sp.inWord = true
		}
		return i + 2, nil
	case c == '$': // unquoted and empty, it makes no word
		before := sp.w.Len()
		i, err := sp.expand(i)
		sp.inWord = sp.inWord || sp.w.Len() > before
		return i, err
	case c == '~' && !sp.inWord && (i+1 == len(s) || strings.IndexByte("/ \t\n", s[i+1]) >= 0):
		sp.w.WriteString(sp.getenv("HOME"))
		sp.inWord = true
		return i + 1, nil
	case c == '#' && !sp.inWord, strings.IndexByte("|&;<>()`*?[", c) >= 0:
		return 0, ruleErrorf(ErrShellSyntax, "sh syntax %q in %q: it is not run by a shell", c, s)
	default:
		sp.w.WriteByte(c)
		sp.inWord = true
		return i + 1, nil
	}
}

// doubleQuoted reads a "…" whose text starts at s[i]; it returns the index after the
// closing quote.
func (sp *shellSplitter) doubleQuoted(i int) (int, error) {
	s := sp.s
	for {
		if i == len(s) {
			return 0, ruleErrorf(ErrShellSyntax, `an unclosed "`)
		}
		switch c := s[i]; {
		case c == '"':
			return i + 1, nil
		case c == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0:
			if s[i+1] != '\n' {
				sp.w.WriteByte(s[i+1])
			}
			i += 2
		case c == '$':
			var err error
			if i, err = sp.expand(i); err != nil {
				return 0, err
			}
		case c == '`':
			return 0, ruleErrorf(ErrShellSyntax, "command substitution in %q", s)
		default:
			sp.w.WriteByte(c)
			i++
		}
	}
}

// expand writes the value of the $NAME or ${NAME} at s[i] (a '$'); it returns the index
// after it.
func (sp *shellSplitter) expand(i int) (int, error) {
	rest := sp.s[i+1:]
	var name string
	if strings.HasPrefix(rest, "{") {
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return 0, ruleErrorf(ErrShellSyntax, "an unclosed ${")
		}
		name, i = rest[1:j], i+1+j+1
	} else {
		j := 0
		for j < len(rest) && (rest[j] == '_' || rest[j] >= 'a' && rest[j] <= 'z' || rest[j] >= 'A' && rest[j] <= 'Z' || j > 0 && rest[j] >= '0' && rest[j] <= '9') {
			j++
		}
		name, i = rest[:j], i+1+j
	}
	if !validEnvName(name) {
		return 0, ruleErrorf(ErrShellSyntax, "$ that is not $NAME or ${NAME} in %q", sp.s)
	}
	sp.w.WriteString(sp.getenv(name))
	return i, nil
}

// end ends the word being read, if any.
func (sp *shellSplitter) end() {
	if sp.inWord {
		sp.words = append(sp.words, sp.w.String())
	}
	sp.w.Reset()
	sp.inWord = false
}

// validEnvName is an sh variable name.
func validEnvName(name string) bool {
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return false
	}
	for _, r := range name {
		if r != '_' && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}
