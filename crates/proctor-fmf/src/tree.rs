//! Growing a tree from the file system and applying inheritance, mirroring fmf's `Tree.grow`,
//! `Tree.update`, `Tree.child` and `Tree.inherit`.

use crate::merge::{merge_special, MergeProblem};
use crate::yaml::{kind, parse_document, parse_metadata};
use crate::FmfError;
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The file that marks a directory as the node for that directory.
const MAIN: &str = "main.fmf";
/// The suffix of metadata files.
const SUFFIX: &str = ".fmf";
/// The directory marking a tree's root.
const ROOT_MARKER: &str = ".fmf";
/// How deep nodes may nest. fmf recurses once per level and stops at Python's recursion limit
/// (a few hundred levels); a bound keeps a hostile `/a/a/a/...` key from building node names of
/// quadratic total size. Real trees are a handful of levels deep.
pub const MAX_DEPTH: usize = 128;

/// An FMF metadata tree: every node with its data after inheritance, in fmf's order (each node
/// before its children, children sorted by name).
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    root: PathBuf,
    version: i64,
    nodes: Vec<Node>,
}

/// One node of a tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    name: String,
    data: Mapping,
    sources: Vec<PathBuf>,
    children: Vec<usize>,
    select: Option<bool>,
}

impl Node {
    /// The node's name: its path from the tree root, like `/tests/login/basic` (`/` for the
    /// root).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's data: its own keys merged over what it inherited (and, after
    /// [`Tree::adjust`], with the applicable adjust rules merged in).
    pub fn data(&self) -> &Mapping {
        &self.data
    }

    /// One key of the node's data.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.data.get(key)
    }

    /// The files whose data the node holds, its ancestors' first (as fmf's `sources`): the last
    /// is the file that defines the node itself, or its nearest ancestor's when the node is
    /// defined by a `/child` key.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// Whether the node has no children.
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }

    /// Whether fmf lists the node by default: the `select` directive when the node has one,
    /// else whether it is a leaf. tmt's tests and plans are the selected nodes.
    pub fn is_selected(&self) -> bool {
        self.select.unwrap_or(self.children.is_empty())
    }

    pub(crate) fn data_mut(&mut self) -> &mut Mapping {
        &mut self.data
    }
}

impl Tree {
    /// Reads the tree that `path` is in: the nearest directory at or above `path` holding a
    /// `.fmf` directory is the root, and the whole tree from there is read. Every `*.fmf` file
    /// is YAML; `main.fmf` holds a directory's own node, `NAME.fmf` a child `NAME`, and keys
    /// starting with `/` child nodes. Hidden files and directories are skipped (unless
    /// `.fmf/config` lists them under `explore: include:`), and so are directories that are
    /// trees of their own and directories without metadata.
    pub fn load(path: &Path) -> Result<Tree, FmfError> {
        let root = find_root(path)?;
        let version = read_version(&root)?;
        let explore_include = read_explore_include(&root)?;
        let mut builder = Builder::new(explore_include);
        builder.grow(0, &root)?;
        let nodes = builder.into_nodes()?;
        Ok(Tree {
            root,
            version,
            nodes,
        })
    }

    /// Reads a tree held in one document, as if `text` were the `main.fmf` at `root` and the
    /// only metadata file (like fmf's `Tree(dict)`): for metadata that does not live on disk,
    /// and for tests. `/child` keys make the other nodes.
    pub fn parse(root: &Path, text: &str) -> Result<Tree, FmfError> {
        let path = root.join(MAIN);
        let data = parse_metadata(&path, text)?;
        let mut builder = Builder::new(Vec::new());
        builder.drafts[0].sources.push(path.clone());
        builder.update(0, data, &path)?;
        Ok(Tree {
            root: root.to_owned(),
            version: 1,
            nodes: builder.into_nodes()?,
        })
    }

    /// The tree's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The number in `.fmf/version`.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Every node, each before its children, children sorted by name.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    /// The node named `name`, if any.
    pub fn find(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|node| node.name == name)
    }

    /// The children of `node`, sorted by name.
    pub fn children<'t>(&'t self, node: &'t Node) -> impl Iterator<Item = &'t Node> + 't {
        node.children.iter().map(|&index| &self.nodes[index])
    }

    pub(crate) fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }
}

fn find_root(path: &Path) -> Result<PathBuf, FmfError> {
    let io_error = |source| FmfError::Io {
        path: path.to_owned(),
        source,
    };
    let start = std::path::absolute(path).map_err(io_error)?;
    fs::read_dir(&start).map_err(io_error)?;
    start
        .ancestors()
        .find(|directory| directory.join(ROOT_MARKER).is_dir())
        .map(Path::to_path_buf)
        .ok_or(FmfError::NoRoot {
            path: start.clone(),
        })
}

fn read_version(root: &Path) -> Result<i64, FmfError> {
    let path = root.join(ROOT_MARKER).join("version");
    let text = fs::read_to_string(&path).map_err(|source| FmfError::Io {
        path: path.clone(),
        source,
    })?;
    crate::python::strip(&text)
        .parse()
        .map_err(|_| FmfError::BadVersion { path, found: text })
}

/// The hidden names `.fmf/config` asks to read anyway (`explore: include: [...]`).
fn read_explore_include(root: &Path) -> Result<Vec<String>, FmfError> {
    let path = root.join(ROOT_MARKER).join("config");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(FmfError::Io { path, source }),
    };
    let config = parse_document(&path, &text)?;
    let format_error = |problem: &str| FmfError::Format {
        path: path.clone(),
        problem: problem.to_owned(),
    };
    let include = match config.get("explore") {
        None => return Ok(Vec::new()),
        Some(Value::Mapping(explore)) => explore.get("include"),
        Some(_) => return Err(format_error("`explore` must be a mapping")),
    };
    let Some(include) = include else {
        return Ok(Vec::new());
    };
    let Value::Sequence(names) = include else {
        return Err(format_error("`explore: include:` must be a list"));
    };
    let names = names
        .iter()
        .map(|name| name.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format_error("`explore: include:` must list names"))?;
    if names.iter().any(|name| name == ROOT_MARKER) {
        return Err(format_error("the `.fmf` directory cannot hold metadata"));
    }
    Ok(names)
}

/// fmf's special directives, the `/` key of a node.
#[derive(Debug, Clone, Default)]
struct Directives {
    inherit: Option<bool>,
    select: Option<bool>,
}

/// A node while the tree is being read.
#[derive(Debug)]
struct Draft {
    name: String,
    depth: usize,
    children: BTreeMap<String, usize>,
    /// The node's own keys, suffixes (`key+`) not yet applied.
    raw: Mapping,
    sources: Vec<PathBuf>,
    directives: Directives,
    /// Whether any data (even an empty document) defined the node: directories without
    /// metadata are dropped.
    updated: bool,
}

impl Draft {
    fn new(name: String, depth: usize) -> Self {
        Draft {
            name,
            depth,
            children: BTreeMap::new(),
            raw: Mapping::new(),
            sources: Vec::new(),
            directives: Directives::default(),
            updated: false,
        }
    }
}

struct Builder {
    drafts: Vec<Draft>,
    /// Symbolic links to directories already followed, resolved, so a link cycle is entered
    /// only once (as in fmf).
    symlink_dirs: Vec<PathBuf>,
    explore_include: Vec<String>,
}

/// A directory's entries, as `os.walk` sorts them into files and directories.
struct Listing {
    files: Vec<(String, PathBuf)>,
    directories: Vec<(String, PathBuf)>,
}

impl Builder {
    /// A builder holding just the root node.
    fn new(explore_include: Vec<String>) -> Self {
        Builder {
            drafts: vec![Draft::new("/".to_owned(), 0)],
            symlink_dirs: Vec::new(),
            explore_include,
        }
    }

    fn is_skipped(&self, name: &str) -> bool {
        name.starts_with('.') && !self.explore_include.iter().any(|included| included == name)
    }

    /// Reads `directory` into node `node`: its `main.fmf` first, then the other `*.fmf` files
    /// and the subdirectories, each in name order, then drops children that got no data.
    fn grow(&mut self, node: usize, directory: &Path) -> Result<(), FmfError> {
        let listing = list(directory)?;
        let mut files: Vec<(String, PathBuf)> = listing
            .files
            .into_iter()
            .filter(|(name, _)| name.ends_with(SUFFIX) && !self.is_skipped(name))
            .collect();
        // Sorting is stable, so the others stay in name order behind `main.fmf`.
        files.sort_by_key(|(name, _)| name != MAIN);
        for (name, path) in files {
            let data = read_metadata(&path)?;
            if name == MAIN {
                self.drafts[node].sources.push(path.clone());
                self.update(node, data, &path)?;
            } else {
                let stem = &name[..name.len() - SUFFIX.len()];
                let child = self.child(node, stem, &path)?;
                self.update(child, data, &path)?;
                self.drafts[child].sources.push(path);
            }
        }
        for (name, path) in listing.directories {
            if self.is_skipped(&name) || self.is_symlink_seen_before(&path) {
                continue;
            }
            if path.join(ROOT_MARKER).is_dir() {
                continue;
            }
            let child = self.child(node, &name, &path)?;
            self.grow(child, &path)?;
        }
        self.drop_empty_children(node);
        Ok(())
    }

    fn is_symlink_seen_before(&mut self, path: &Path) -> bool {
        let is_link = fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink());
        if !is_link {
            return false;
        }
        let Ok(target) = fs::canonicalize(path) else {
            return true;
        };
        if self.symlink_dirs.contains(&target) {
            return true;
        }
        self.symlink_dirs.push(target);
        false
    }

    fn drop_empty_children(&mut self, node: usize) {
        let drafts = &self.drafts;
        let empty: Vec<String> = drafts[node]
            .children
            .iter()
            .filter(|(_, &child)| drafts[child].children.is_empty() && !drafts[child].updated)
            .map(|(name, _)| name.clone())
            .collect();
        for name in empty {
            self.drafts[node].children.remove(&name);
        }
    }

    /// The child `name` of `parent`, created if new. `source` names the file or directory
    /// that asks for it, for errors.
    fn child(&mut self, parent: usize, name: &str, source: &Path) -> Result<usize, FmfError> {
        if let Some(&existing) = self.drafts[parent].children.get(name) {
            return Ok(existing);
        }
        let depth = self.drafts[parent].depth + 1;
        if depth > MAX_DEPTH {
            return Err(FmfError::Format {
                path: source.to_owned(),
                problem: format!("nodes nest deeper than {MAX_DEPTH} levels"),
            });
        }
        let full_name = join_name(&self.drafts[parent].name, name);
        let index = self.drafts.len();
        self.drafts.push(Draft::new(full_name, depth));
        self.drafts[parent].children.insert(name.to_owned(), index);
        Ok(index)
    }

    /// fmf's `Tree.update`: merges a document's keys into a node, `/` keys making child nodes.
    fn update(&mut self, node: usize, data: Option<Mapping>, path: &Path) -> Result<(), FmfError> {
        self.drafts[node].updated = true;
        let Some(mut data) = data else {
            return Ok(());
        };
        if let Some(directives) = data.shift_remove("/") {
            self.set_directives(node, &directives, path)?;
        }
        for (key, value) in data {
            let Value::String(key) = key else {
                return Err(FmfError::Format {
                    path: path.to_owned(),
                    problem: format!(
                        "key {} of node {} is not a string",
                        crate::python::repr(&key),
                        self.drafts[node].name
                    ),
                });
            };
            if key.starts_with('/') {
                self.update_child_path(node, &key, value, path)?;
            } else {
                self.drafts[node].raw.insert(Value::String(key), value);
            }
        }
        Ok(())
    }

    /// Handles a `/a/b/c:` key of `node`. fmf recurses one level per name; this walks down
    /// instead, creating and marking each level, so that deep paths cannot exhaust the stack.
    fn update_child_path(
        &mut self,
        node: usize,
        key: &str,
        value: Value,
        path: &Path,
    ) -> Result<(), FmfError> {
        let mut current = node;
        let mut key = key;
        loop {
            let name = key.trim_start_matches('/');
            let Some(slash) = name.find('/') else {
                let child = self.child(current, name, path)?;
                let data = match value {
                    Value::Mapping(mapping) => Some(mapping),
                    Value::Null => None,
                    other => {
                        return Err(FmfError::Format {
                            path: path.to_owned(),
                            problem: format!(
                                "child node {} must be a mapping, found {}",
                                self.drafts[child].name,
                                kind(&other)
                            ),
                        })
                    }
                };
                return self.update(child, data, path);
            };
            let (head, rest) = name.split_at(slash);
            let child = self.child(current, head, path)?;
            self.drafts[child].updated = true;
            if rest == "/" {
                return self.set_directives(child, &value, path);
            }
            current = child;
            key = rest;
        }
    }

    fn set_directives(
        &mut self,
        node: usize,
        directives: &Value,
        path: &Path,
    ) -> Result<(), FmfError> {
        let name = &self.drafts[node].name;
        let problem = |problem: String| FmfError::Format {
            path: path.to_owned(),
            problem: format!("invalid fmf directive in {name}: {problem}"),
        };
        let Value::Mapping(directives) = directives else {
            return Err(problem(format!(
                "expected a mapping, found {}",
                kind(directives)
            )));
        };
        let mut parsed = self.drafts[node].directives.clone();
        for (key, value) in directives {
            let slot = match key.as_str() {
                Some("inherit") => &mut parsed.inherit,
                Some("select") => &mut parsed.select,
                _ => {
                    return Err(problem(format!(
                        "unknown directive {}",
                        crate::python::repr(key)
                    )))
                }
            };
            let Value::Bool(flag) = value else {
                return Err(problem(format!(
                    "{} must be a boolean, found {}",
                    crate::python::repr(key),
                    kind(value)
                )));
            };
            *slot = Some(*flag);
        }
        self.drafts[node].directives = parsed;
        Ok(())
    }

    /// Applies inheritance from the root down and lays the nodes out in fmf's order.
    fn into_nodes(self) -> Result<Vec<Node>, FmfError> {
        let mut nodes: Vec<Node> = Vec::new();
        // (draft, index of the parent in `nodes`)
        let mut pending: Vec<(usize, Option<usize>)> = vec![(0, None)];
        while let Some((draft_index, parent)) = pending.pop() {
            let draft = &self.drafts[draft_index];
            let inherited = parent.filter(|_| draft.directives.inherit != Some(false));
            let (mut data, mut sources) = match inherited {
                Some(parent) => (nodes[parent].data.clone(), nodes[parent].sources.clone()),
                None => (Mapping::new(), Vec::new()),
            };
            sources.extend(draft.sources.iter().cloned());
            merge_special(&mut data, &draft.raw)
                .map_err(|problem| merge_error(&draft.name, sources.last(), problem))?;
            let index = nodes.len();
            if let Some(parent) = parent {
                nodes[parent].children.push(index);
            }
            nodes.push(Node {
                name: draft.name.clone(),
                data,
                sources,
                children: Vec::new(),
                select: draft.directives.select,
            });
            // Reversed so that the smallest name is visited first.
            for &child in draft.children.values().rev() {
                pending.push((child, Some(index)));
            }
        }
        Ok(nodes)
    }
}

pub(crate) fn merge_error(node: &str, file: Option<&PathBuf>, problem: MergeProblem) -> FmfError {
    FmfError::Merge {
        node: node.to_owned(),
        file: file.cloned(),
        key: problem.key,
        problem: problem.problem,
    }
}

/// `os.path.join(parent, name)` for node names.
fn join_name(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Lists a directory as `os.walk` does: directories (following symbolic links) apart from
/// everything else, each sorted by name.
fn list(directory: &Path) -> Result<Listing, FmfError> {
    let io_error = |source| FmfError::Io {
        path: directory.to_owned(),
        source,
    };
    let mut listing = Listing {
        files: Vec::new(),
        directories: Vec::new(),
    };
    for entry in fs::read_dir(directory).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            listing.directories.push((name, path));
        } else {
            listing.files.push((name, path));
        }
    }
    listing.files.sort();
    listing.directories.sort();
    Ok(listing)
}

fn read_metadata(path: &Path) -> Result<Option<Mapping>, FmfError> {
    let io_error = |source| FmfError::Io {
        path: path.to_owned(),
        source,
    };
    // Only regular files: opening a FIFO named `x.fmf` would block for ever.
    let metadata = fs::metadata(path).map_err(io_error)?;
    if !metadata.is_file() {
        return Err(FmfError::Format {
            path: path.to_owned(),
            problem: "not a regular file".to_owned(),
        });
    }
    let bytes = fs::read(path).map_err(io_error)?;
    let text = String::from_utf8(bytes).map_err(|error| FmfError::Yaml {
        path: path.to_owned(),
        line: None,
        column: None,
        message: format!("not valid UTF-8: {error}"),
    })?;
    parse_metadata(path, &text)
}
