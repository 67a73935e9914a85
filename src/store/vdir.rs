//! `vdir`: a folder per calendar, one `.ics` file per item, as vdirsyncer and khal use it.
//!
//! Calendar `/alice/` of a server rooted at `ROOT` is the folder `ROOT/alice/`; item hrefs are
//! `/alice/NAME.ics`. The etag is the file's mtime (nanoseconds) and inode, like vdirsyncer's:
//! every write goes to a temporary file that is then linked or renamed into place, so a write is
//! atomic and always yields a new inode and etag.
//!
//! A user's home is a folder of calendar folders; a calendar's name and colour are
//! vdirsyncer's metadata files `displayname` and `color` beside its items.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::calendar::{CalendarStore, Fetched, ItemVersion, Resource};
use crate::domain::error::{ErrorKind, StoreError, StoreResult};
use crate::domain::mailbox::{CalendarProps, Collection, CollectionKind, HomeListing};
use crate::domain::types::{CalendarPath, Etag, Href};

pub struct VdirStore {
    root: Arc<Path>,
}

impl VdirStore {
    pub fn new(root: PathBuf) -> Self {
        VdirStore { root: root.into() }
    }
}

fn etag_of(meta: &fs::Metadata) -> Etag {
    Etag::new(format!(
        "{}.{:09};{}",
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    ))
}

fn cal_dir(root: &Path, cal: &CalendarPath) -> PathBuf {
    root.join(cal.as_str().trim_start_matches('/'))
}

fn item_path(root: &Path, href: &Href) -> StoreResult<PathBuf> {
    let rel = href.as_str().trim_start_matches('/');
    if rel.split('/').any(|seg| seg == ".." || seg.is_empty()) || !rel.ends_with(".ics") {
        return Err(StoreError::new(
            ErrorKind::InvalidData,
            format!("href {href} is not a vdir item"),
        ));
    }
    Ok(root.join(rel))
}

fn valid_name(name: &str) -> StoreResult<()> {
    if name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || !name.ends_with(".ics")
    {
        return Err(StoreError::new(
            ErrorKind::InvalidData,
            format!("{name:?} is not a valid item file name"),
        ));
    }
    Ok(())
}

/// Writes `data` to a fresh temporary file next to `dest`.
fn write_temp(dest: &Path, data: &str) -> io::Result<PathBuf> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("item");
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    f.write_all(data.as_bytes())?;
    Ok(tmp)
}

fn check_etag(path: &Path, href: &Href, etag: &Etag) -> StoreResult<()> {
    let meta = fs::metadata(path).map_err(|e| StoreError::io(href, e))?;
    if &etag_of(&meta) != etag {
        return Err(StoreError::new(
            ErrorKind::PreconditionFailed,
            format!("{href} changed since it was read"),
        ));
    }
    Ok(())
}

/// vdirsyncer's metadata files beside a calendar's items, with what each holds.
fn meta_files(props: &CalendarProps) -> [(&'static str, &Option<String>); 2] {
    [("displayname", &props.displayname), ("color", &props.color)]
}

/// A calendar folder's name and colour, from its metadata files.
fn read_meta(dir: &Path) -> CalendarProps {
    let read = |name: &str| {
        let text = fs::read_to_string(dir.join(name)).ok()?;
        Some(text.trim().to_string()).filter(|t| !t.is_empty())
    };
    CalendarProps {
        displayname: read("displayname"),
        color: read("color"),
        ..CalendarProps::default()
    }
}

/// Writes the metadata files `props` has values for, each replaced at once.
fn write_meta(dir: &Path, props: &CalendarProps) -> io::Result<()> {
    for (name, value) in meta_files(props) {
        if let Some(value) = value {
            let dest = dir.join(name);
            let tmp = write_temp(&dest, value)?;
            fs::rename(&tmp, &dest).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })?;
        }
    }
    Ok(())
}

/// The calendars of the home folder `home`: each folder in it.
fn home_listing(root: &Path, home: &CalendarPath) -> StoreResult<HomeListing> {
    let dir = cal_dir(root, home);
    let ctx = || format!("listing home {home} ({})", dir.display());
    let mut collections = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| StoreError::io(ctx(), e))? {
        let entry = entry.map_err(|e| StoreError::io(ctx(), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| !n.starts_with('.')) else {
            continue;
        };
        let Ok(path) = format!("{home}{name}/").parse::<CalendarPath>() else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collections.push(Collection {
                props: read_meta(&entry.path()),
                path,
                kind: CollectionKind::Calendar,
                owner: None,
            });
        }
    }
    collections.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(HomeListing {
        collections,
        ..HomeListing::default()
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::new(ErrorKind::Transient, format!("vdir worker failed: {e}")))?
}

#[async_trait]
impl CalendarStore for VdirStore {
    fn describe(&self) -> String {
        format!("vdir {}", self.root.display())
    }

    /// Files are independent; a few writes at once keep the disk busy.
    fn parallelism(&self) -> usize {
        4
    }

    async fn check_calendar(&self, cal: &CalendarPath) -> StoreResult<()> {
        let dir = cal_dir(&self.root, cal);
        let cal = cal.clone();
        blocking(move || match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(StoreError::new(
                ErrorKind::NotFound,
                format!("calendar {cal}: {} is not a folder", dir.display()),
            )),
            Err(e) => Err(StoreError::io(
                format_args!("calendar {cal} ({})", dir.display()),
                e,
            )),
        })
        .await
    }

    async fn list(&self, cal: &CalendarPath) -> StoreResult<Vec<ItemVersion>> {
        let dir = cal_dir(&self.root, cal);
        let cal = cal.clone();
        blocking(move || {
            let ctx = || format!("listing calendar {cal} ({})", dir.display());
            let mut out = Vec::new();
            for entry in fs::read_dir(&dir).map_err(|e| StoreError::io(ctx(), e))? {
                let entry = entry.map_err(|e| StoreError::io(ctx(), e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') || !name.ends_with(".ics") {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // deleted meanwhile
                    Err(e) => return Err(StoreError::io(ctx(), e)),
                };
                if meta.is_file() {
                    out.push(ItemVersion {
                        href: cal.join(name),
                        etag: etag_of(&meta),
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn fetch(&self, _cal: &CalendarPath, hrefs: &[Href]) -> StoreResult<Vec<Fetched>> {
        let root = self.root.clone();
        let hrefs = hrefs.to_vec();
        blocking(move || {
            Ok(hrefs
                .into_iter()
                .map(|href| {
                    let res = item_path(&root, &href).and_then(|path| {
                        let mut f = fs::File::open(&path).map_err(|e| StoreError::io(&href, e))?;
                        let meta = f.metadata().map_err(|e| StoreError::io(&href, e))?;
                        let mut data = String::with_capacity(meta.len() as usize);
                        f.read_to_string(&mut data)
                            .map_err(|e| StoreError::io(&href, e))?;
                        Ok(Resource {
                            href: href.clone(),
                            etag: etag_of(&meta),
                            data,
                        })
                    });
                    (href, res)
                })
                .collect())
        })
        .await
    }

    async fn create(&self, cal: &CalendarPath, name: &str, data: &str) -> StoreResult<ItemVersion> {
        valid_name(name)?;
        let href = cal.join(name);
        let path = item_path(&self.root, &href)?;
        let data = data.to_string();
        blocking(move || {
            let tmp = write_temp(&path, &data).map_err(|e| StoreError::io(&href, e))?;
            // link() fails if the name exists: If-None-Match: * without a race window.
            let linked = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
            linked.map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => StoreError::new(
                    ErrorKind::PreconditionFailed,
                    format!("{href} already exists"),
                ),
                _ => StoreError::io(&href, e),
            })?;
            let meta = fs::metadata(&path).map_err(|e| StoreError::io(&href, e))?;
            Ok(ItemVersion {
                etag: etag_of(&meta),
                href,
            })
        })
        .await
    }

    async fn update(&self, href: &Href, etag: &Etag, data: &str) -> StoreResult<Etag> {
        let path = item_path(&self.root, href)?;
        let (href, etag, data) = (href.clone(), etag.clone(), data.to_string());
        blocking(move || {
            // A folder has no compare-and-swap: a writer outside tandem can still slip in between
            // this check and the rename. The next pass sees its etag and re-plans.
            check_etag(&path, &href, &etag)?;
            let tmp = write_temp(&path, &data).map_err(|e| StoreError::io(&href, e))?;
            if let Err(e) = fs::rename(&tmp, &path) {
                let _ = fs::remove_file(&tmp);
                return Err(StoreError::io(&href, e));
            }
            let meta = fs::metadata(&path).map_err(|e| StoreError::io(&href, e))?;
            Ok(etag_of(&meta))
        })
        .await
    }

    async fn collections(&self, home: &CalendarPath) -> StoreResult<HomeListing> {
        let (root, home) = (self.root.clone(), home.clone());
        blocking(move || home_listing(&root, &home)).await
    }

    async fn make_calendar(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        let (dir, cal, props) = (cal_dir(&self.root, cal), cal.clone(), props.clone());
        blocking(move || {
            let ctx = || format!("making calendar {cal} ({})", dir.display());
            fs::create_dir(&dir).map_err(|e| StoreError::io(ctx(), e))?;
            write_meta(&dir, &props).map_err(|e| StoreError::io(ctx(), e))
        })
        .await
    }

    async fn set_props(&self, cal: &CalendarPath, props: &CalendarProps) -> StoreResult<()> {
        let (dir, cal, props) = (cal_dir(&self.root, cal), cal.clone(), props.clone());
        blocking(move || {
            let ctx = || format!("calendar {cal} ({})", dir.display());
            fs::metadata(&dir).map_err(|e| StoreError::io(ctx(), e))?;
            write_meta(&dir, &props).map_err(|e| StoreError::io(ctx(), e))
        })
        .await
    }

    async fn delete(&self, href: &Href, etag: &Etag) -> StoreResult<()> {
        let path = item_path(&self.root, href)?;
        let (href, etag) = (href.clone(), etag.clone());
        blocking(move || {
            check_etag(&path, &href, &etag)?;
            fs::remove_file(&path).map_err(|e| StoreError::io(&href, e))
        })
        .await
    }
}
