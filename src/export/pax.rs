//! POSIX pax archives (IEEE 1003.1-2001 `pax` format, as GNU tar and
//! bsdtar read them): ustar headers, with an extended header before any
//! entry that needs one (long or non-ASCII names, nanosecond times, large
//! sizes and ids, xattrs as `SCHILY.xattr.NAME`, sparse maps as GNU sparse
//! format 1.0). Encoding only; `export` says what goes in.

use std::io::{self, Write};

pub const BLOCK: usize = 512;

/// What an entry is, by its ustar typeflag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Regular,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

impl Type {
    fn flag(self) -> u8 {
        match self {
            Type::Regular => b'0',
            Type::HardLink => b'1',
            Type::Symlink => b'2',
            Type::CharDevice => b'3',
            Type::BlockDevice => b'4',
            Type::Directory => b'5',
            Type::Fifo => b'6',
        }
    }
}

/// One archive member's header fields.
#[derive(Debug, Clone)]
pub struct Header {
    pub path: Vec<u8>,
    pub kind: Type,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes of data that follow (0 for all but regular files).
    pub size: u64,
    /// (seconds, nanoseconds) since the epoch.
    pub mtime: (i64, u32),
    pub atime: (i64, u32),
    pub ctime: (i64, u32),
    /// Symlink target or hard-link target path.
    pub link: Vec<u8>,
    pub dev: (u32, u32),
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a sparse file: its size and the stored regions (offset, length).
    pub sparse: Option<(u64, Vec<(u64, u64)>)>,
}

/// One `LEN key=value\n` record; LEN counts the whole record, itself too.
fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A time as a decimal number of seconds: (-2, 500000000), half a second
/// after -2 s, is "-1.500000000".
fn time(t: (i64, u32)) -> Vec<u8> {
    let (sec, nsec) = t;
    match sec < 0 && nsec > 0 {
        true => format!("-{}.{:09}", -(sec + 1), 1_000_000_000 - nsec),
        false => format!("{sec}.{nsec:09}"),
    }
    .into_bytes()
}

/// Writes `value` as NUL-terminated octal in `field`; false if it does not fit.
fn octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
    true
}

/// The 512-byte ustar header for `name` with the given fields.
fn ustar(name: &[u8], flag: u8, h: &Header, size: u64, link: &[u8]) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let n = name.len().min(100);
    b[..n].copy_from_slice(&name[..n]);
    octal(&mut b[100..108], (h.mode & 0o7777) as u64);
    octal(&mut b[108..116], h.uid as u64);
    octal(&mut b[116..124], h.gid as u64);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], h.mtime.0.max(0) as u64);
    b[156] = flag;
    let l = link.len().min(100);
    b[157..157 + l].copy_from_slice(&link[..l]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    octal(&mut b[329..337], h.dev.0 as u64);
    octal(&mut b[337..345], h.dev.1 as u64);
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    b
}

/// Whether `s` fits a ustar name field as it is.
fn plain(s: &[u8], max: usize) -> bool {
    s.len() <= max && s.iter().all(|&c| c.is_ascii() && c != 0)
}

/// The sparse map that precedes a sparse file's data (GNU 1.0): the
/// number of regions, then offset and length of each, one per line,
/// padded to a block.
fn sparse_map(regions: &[(u64, u64)]) -> Vec<u8> {
    let mut map = format!("{}\n", regions.len());
    for (off, len) in regions {
        map.push_str(&format!("{off}\n{len}\n"));
    }
    let mut map = map.into_bytes();
    map.resize(map.len().div_ceil(BLOCK) * BLOCK, 0);
    map
}

pub struct Writer<W: Write> {
    out: W,
    /// Bytes written so far.
    pub written: u64,
    /// Extended headers written so far (their names must differ).
    extended: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out,
            written: 0,
            extended: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Writes `h`'s header (and extended header); then the caller writes
    /// `h.size` bytes of data with [`Writer::data`] (for a sparse file the
    /// stored regions, one after another) and ends it with [`Writer::pad`].
    pub fn header(&mut self, h: &Header) -> io::Result<()> {
        let mut ext = Vec::new();
        let (mut name, mut size) = (h.path.clone(), h.size);
        let mut map = Vec::new();
        if let Some((real, regions)) = &h.sparse {
            record(&mut ext, b"GNU.sparse.major", b"1");
            record(&mut ext, b"GNU.sparse.minor", b"0");
            record(&mut ext, b"GNU.sparse.name", &h.path);
            record(
                &mut ext,
                b"GNU.sparse.realsize",
                real.to_string().as_bytes(),
            );
            map = sparse_map(regions);
            size += map.len() as u64;
            name = b"GNUSparseFile.0/".to_vec();
            name.extend(h.path.rsplit(|&c| c == b'/').next().unwrap_or(b"f"));
            name.truncate(100);
        } else if !plain(&h.path, 100) {
            record(&mut ext, b"path", &h.path);
        }
        if !plain(&h.link, 100) {
            record(&mut ext, b"linkpath", &h.link);
        }
        record(&mut ext, b"mtime", &time(h.mtime));
        record(&mut ext, b"atime", &time(h.atime));
        record(&mut ext, b"ctime", &time(h.ctime));
        if size > 0o77777777777 {
            record(&mut ext, b"size", size.to_string().as_bytes());
        }
        for (key, id) in [(&b"uid"[..], h.uid), (b"gid", h.gid)] {
            if id > 0o7777777 {
                record(&mut ext, key, id.to_string().as_bytes());
            }
        }
        for (k, v) in &h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            record(&mut ext, &key, v);
        }
        self.extended += 1;
        let mut ext_name = format!("PaxHeaders/{}", self.extended).into_bytes();
        ext_name.truncate(100);
        let ext_header = Header {
            mode: 0o644,
            uid: 0,
            gid: 0,
            ..h.clone()
        };
        let eh = ustar(&ext_name, b'x', &ext_header, ext.len() as u64, b"");
        self.put(&eh)?;
        ext.resize(ext.len().div_ceil(BLOCK) * BLOCK, 0);
        self.put(&ext)?;
        let name = if plain(&name, 100) {
            name
        } else {
            b"././@PaxPath".to_vec()
        };
        let link = if plain(&h.link, 100) {
            h.link.clone()
        } else {
            b"././@PaxLink".to_vec()
        };
        let main = ustar(&name, h.kind.flag(), h, size, &link);
        self.put(&main)?;
        self.put(&map)
    }

    pub fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.put(bytes)
    }

    /// Pads the data of the last entry to a whole block.
    pub fn pad(&mut self) -> io::Result<()> {
        let rest = (BLOCK - (self.written % BLOCK as u64) as usize) % BLOCK;
        self.put(&vec![0; rest])
    }

    /// Ends the archive (two zero blocks); gives back the output and the
    /// archive's length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.pad()?;
        self.put(&[0; 2 * BLOCK])?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_their_own_length() {
        for value in [
            &b""[..],
            b"x",
            b"12345678",
            &[b'a'; 94],
            &[b'a'; 95],
            &[b'a'; 995],
        ] {
            let mut out = Vec::new();
            record(&mut out, b"path", value);
            let len: usize =
                std::str::from_utf8(&out[..out.iter().position(|&c| c == b' ').unwrap()])
                    .unwrap()
                    .parse()
                    .unwrap();
            assert_eq!(len, out.len(), "{}", value.len());
        }
    }

    #[test]
    fn headers_have_the_ustar_checksum() {
        let h = Header {
            path: b"a".to_vec(),
            kind: Type::Regular,
            mode: 0o644,
            uid: 1,
            gid: 2,
            size: 3,
            mtime: (4, 5),
            atime: (4, 5),
            ctime: (4, 5),
            link: Vec::new(),
            dev: (0, 0),
            xattrs: Vec::new(),
            sparse: None,
        };
        let b = ustar(b"a", b'0', &h, 3, b"");
        let mut copy = b;
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&x| x as u32).sum();
        let stored = u32::from_str_radix(std::str::from_utf8(&b[148..154]).unwrap(), 8).unwrap();
        assert_eq!(stored, sum);
    }
}
