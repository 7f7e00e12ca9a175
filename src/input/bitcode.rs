//! Just enough of an LLVM bitstream reader to find inline assembly.
//!
//! Why a reader and not a byte search: clang writes the module-level asm
//! (`MODULE_CODE_ASM`) and function-level asm (`CST_CODE_INLINEASM`) as
//! unabbreviated records, one VBR6 field per character. The text is not
//! byte-aligned, so `.incbin` never appears in the file's bytes (checked on
//! clang 22 output by `cache::tests::real_raw_bytes_hide_the_asm`).
//!
//! The reader walks only the blocks that can hold asm: the module block,
//! function blocks and constants blocks (plus BLOCKINFO, whose
//! abbreviations the others use). Every other block is skipped whole by
//! the length its header records, so debug-info metadata costs nothing.
//! Anything it does not understand is an error, never "no asm": the caller
//! then treats the module as uncacheable.
//!
//! Format reference: LLVM's docs/BitCodeFormat.rst, and
//! llvm/include/llvm/Bitcode/LLVMBitCodes.h for the ids below.

use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

const BLOCKINFO_BLOCK: u64 = 0;
const MODULE_BLOCK: u64 = 8;
const CONSTANTS_BLOCK: u64 = 11;
const FUNCTION_BLOCK: u64 = 12;

const MODULE_CODE_ASM: u64 = 4;
/// CST_CODE_INLINEASM_OLD, _OLD2, _OLD3 and the current CST_CODE_INLINEASM:
/// older writers' bitcode can still be read by clang 22.
const CST_CODE_INLINEASM: [u64; 4] = [18, 23, 28, 30];
const BLOCKINFO_CODE_SETBID: u64 = 1;
const MAX_DEPTH: u32 = 16;

// Abbreviation ids every block has.
const END_BLOCK: u64 = 0;
const ENTER_SUBBLOCK: u64 = 1;
const DEFINE_ABBREV: u64 = 2;
const UNABBREV_RECORD: u64 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitcodeError(String);

impl fmt::Display for BitcodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable bitcode: {}", self.0)
    }
}

impl std::error::Error for BitcodeError {}

type Result<T> = std::result::Result<T, BitcodeError>;

fn err<T>(what: &str) -> Result<T> {
    Err(BitcodeError(what.to_string()))
}

/// Every inline-asm string in a bitcode file (all modules of it: with
/// `-fsplit-lto-unit` one file can hold two), module-level and
/// function-level, in file order.
///
/// A function-level record's text also holds its constraint string and a
/// few leading numbers (type, flags, length) mapped to bytes: harmless for
/// a directive search, and it spares us knowing each record version's
/// layout.
pub fn inline_asm(file: &[u8]) -> Result<Vec<Vec<u8>>> {
    let data = unwrap(file)?;
    let mut r =
        Reader { bits: Bits { data, pos: 0 }, info: HashMap::new(), ops: Vec::new(), asm: Vec::new(), depth: 0 };
    let total = data.len() * 8;
    while r.bits.pos < total {
        // Writers may pad the stream to a multiple of 4 bytes with zeros.
        if data[r.bits.pos / 8..].iter().all(|&b| b == 0) {
            break;
        }
        if r.bits.read(2)? != ENTER_SUBBLOCK {
            return err("top level holds something other than a block");
        }
        // Each top-level module starts from scratch: its BLOCKINFO is its own.
        r.info.clear();
        r.enter_block()?;
    }
    Ok(r.asm)
}

/// The raw bitstream: skip the wrapper header Apple's tools (and
/// `-fembed-bitcode` users) put in front, then check the magic.
fn unwrap(file: &[u8]) -> Result<&[u8]> {
    let u32_at = |o: usize| file.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
    let data = if file.starts_with(&[0xDE, 0xC0, 0x17, 0x0B]) {
        let (Some(off), Some(len)) = (u32_at(8), u32_at(12)) else { return err("truncated wrapper header") };
        match file.get(off..off.saturating_add(len)) {
            Some(d) => d,
            None => return err("wrapper points past the end of the file"),
        }
    } else {
        file
    };
    if !data.starts_with(b"BC\xC0\xDE") {
        return err("no bitcode magic");
    }
    Ok(&data[4..])
}

/// One operand of an abbreviation. An array's element encoding is the
/// operand after it, as in the format.
#[derive(Debug, Clone, Copy)]
enum Op {
    Literal(u64),
    Fixed(u32),
    Vbr(u32),
    Array,
    Char6,
    Blob,
}

type Abbrev = Rc<[Op]>;

struct Reader<'a> {
    bits: Bits<'a>,
    /// BLOCKINFO abbreviations by block id.
    info: HashMap<u64, Vec<Abbrev>>,
    /// Operands of the current record (reused to avoid an allocation each).
    ops: Vec<u64>,
    asm: Vec<Vec<u8>>,
    depth: u32,
}

impl Reader<'_> {
    /// Called just after ENTER_SUBBLOCK's abbreviation id has been read.
    fn enter_block(&mut self) -> Result<()> {
        let id = self.bits.vbr(8)?;
        let width = self.bits.vbr(4)? as u32;
        self.bits.align32();
        let words = self.bits.read(32)? as usize;
        let end = words.checked_mul(32).and_then(|b| self.bits.pos.checked_add(b));
        let Some(end) = end.filter(|&e| e <= self.bits.data.len() * 8) else {
            return err("block extends past the end of the file");
        };
        if width == 0 || width > 32 {
            return err("bad abbreviation width");
        }
        match id {
            BLOCKINFO_BLOCK | MODULE_BLOCK | CONSTANTS_BLOCK | FUNCTION_BLOCK => {
                // LLVM nests these three deep at most; a corrupt file must
                // not recurse us off the stack.
                if self.depth == MAX_DEPTH {
                    return err("blocks nested too deep");
                }
                self.depth += 1;
                self.block(id, width)?;
                self.depth -= 1;
            }
            // Nothing in here can hold asm (metadata, types, symbol tables,
            // summaries...): jump over it.
            _ => self.bits.pos = end,
        }
        if self.bits.pos != end {
            return err("block length does not match its contents");
        }
        Ok(())
    }

    fn block(&mut self, id: u64, width: u32) -> Result<()> {
        let mut abbrevs: Vec<Abbrev> = self.info.get(&id).cloned().unwrap_or_default();
        // Inside BLOCKINFO: the block whose abbreviations are being defined.
        let mut info_target: Option<u64> = None;
        loop {
            match self.bits.read(width)? {
                END_BLOCK => {
                    self.bits.align32();
                    return Ok(());
                }
                ENTER_SUBBLOCK => self.enter_block()?,
                DEFINE_ABBREV => {
                    let a = self.read_abbrev()?;
                    if id == BLOCKINFO_BLOCK {
                        let Some(t) = info_target else { return err("BLOCKINFO abbreviation before SETBID") };
                        self.info.entry(t).or_default().push(a);
                    } else {
                        abbrevs.push(a);
                    }
                }
                UNABBREV_RECORD => {
                    let code = self.bits.vbr(6)?;
                    let keep = wanted(id, code);
                    let n = self.bits.vbr(6)?;
                    self.ops.clear();
                    for _ in 0..n {
                        let v = self.bits.vbr(6)?;
                        if keep {
                            self.ops.push(v);
                        }
                    }
                    if keep {
                        self.record(id, code, &mut info_target);
                    }
                }
                n => {
                    let Some(a) = abbrevs.get(n as usize - 4) else { return err("undefined abbreviation") };
                    let code = self.scalar(a[0])?;
                    let keep = wanted(id, code);
                    self.ops.clear();
                    self.read_abbreviated(&a[1..], keep)?;
                    if keep {
                        self.record(id, code, &mut info_target);
                    }
                }
            }
        }
    }

    fn record(&mut self, block: u64, code: u64, info_target: &mut Option<u64>) {
        if block == BLOCKINFO_BLOCK {
            *info_target = self.ops.first().copied();
        } else {
            // Characters are stored one per operand; anything wider than a
            // byte is one of the leading numbers, not text.
            self.asm.push(self.ops.iter().map(|&c| u8::try_from(c).unwrap_or(0)).collect());
        }
        debug_assert!(wanted(block, code));
    }

    fn read_abbrev(&mut self) -> Result<Abbrev> {
        let n = self.bits.vbr(5)?;
        let mut ops = Vec::with_capacity(n.min(64) as usize);
        for _ in 0..n {
            if self.bits.read(1)? == 1 {
                ops.push(Op::Literal(self.bits.vbr(8)?));
                continue;
            }
            let op = match self.bits.read(3)? {
                e @ (1 | 2) => match (e, self.bits.vbr(5)?) {
                    // LLVM reads a zero-width field as the constant 0.
                    (_, 0) => Op::Literal(0),
                    (1, w @ 1..=64) => Op::Fixed(w as u32),
                    (2, w @ 2..=32) => Op::Vbr(w as u32),
                    _ => return err("bad field width"),
                },
                3 => Op::Array,
                4 => Op::Char6,
                5 => Op::Blob,
                _ => return err("unknown abbreviation encoding"),
            };
            ops.push(op);
        }
        // An array must be followed by exactly its element; a blob ends it.
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Array if i + 2 != ops.len() => return err("array is not the second-to-last operand"),
                Op::Array if matches!(ops[i + 1], Op::Array | Op::Blob) => return err("bad array element"),
                Op::Blob if i + 1 != ops.len() => return err("blob is not the last operand"),
                _ => {}
            }
        }
        if matches!(ops.first(), None | Some(Op::Array | Op::Blob)) {
            return err("abbreviation without a record code");
        }
        Ok(ops.into())
    }

    /// Reads the operands of a record after its code, by its
    /// abbreviation; into `self.ops` if `keep`. Blob contents are never
    /// kept: no record we look at has one.
    fn read_abbreviated(&mut self, a: &[Op], keep: bool) -> Result<()> {
        for (i, &op) in a.iter().enumerate() {
            match op {
                Op::Array => {
                    let len = self.bits.vbr(6)? as usize;
                    // Bounds a corrupt length (literal elements read no bits).
                    if len > self.bits.remaining() {
                        return err("array longer than the file");
                    }
                    match a[i + 1] {
                        // The common char arrays, skipped without a loop.
                        Op::Fixed(w) if !keep => self.bits.skip(len * w as usize)?,
                        Op::Char6 if !keep => self.bits.skip(len * 6)?,
                        elt => {
                            for _ in 0..len {
                                let v = self.scalar(elt)?;
                                if keep {
                                    self.ops.push(v);
                                }
                            }
                        }
                    }
                    return Ok(());
                }
                Op::Blob => {
                    let len = self.bits.vbr(6)? as usize;
                    self.bits.align32();
                    self.bits.skip(len.saturating_mul(8))?;
                    self.bits.align32();
                    return Ok(());
                }
                op => {
                    let v = self.scalar(op)?;
                    if keep {
                        self.ops.push(v);
                    }
                }
            }
        }
        Ok(())
    }

    fn scalar(&mut self, op: Op) -> Result<u64> {
        const CHAR6: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._";
        match op {
            Op::Literal(v) => Ok(v),
            Op::Fixed(w) => self.bits.read(w),
            Op::Vbr(w) => self.bits.vbr(w),
            Op::Char6 => Ok(CHAR6[self.bits.read(6)? as usize] as u64),
            Op::Array | Op::Blob => err("array or blob where a scalar belongs"),
        }
    }
}

/// The records worth keeping: asm text, and BLOCKINFO's SETBID, which says
/// which block the following abbreviations are for.
fn wanted(block: u64, code: u64) -> bool {
    match block {
        MODULE_BLOCK => code == MODULE_CODE_ASM,
        CONSTANTS_BLOCK => CST_CODE_INLINEASM.contains(&code),
        BLOCKINFO_BLOCK => code == BLOCKINFO_CODE_SETBID,
        _ => false,
    }
}

/// Bit-level cursor. Fields are packed little-endian, LSB first.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> Result<u64> {
        if n > 32 {
            let lo = self.read(32)?;
            let hi = self.read(n - 32)?;
            return Ok(lo | hi << 32);
        }
        if self.pos + n as usize > self.data.len() * 8 {
            return err("unexpected end of file");
        }
        let byte = self.pos / 8;
        // One unaligned load holds the field (n <= 32, plus up to 7 bits of
        // offset); only the last 7 bytes of the file need the slow path.
        let word = match self.data.get(byte..byte + 8) {
            Some(w) => u64::from_le_bytes(w.try_into().unwrap()),
            None => {
                let mut buf = [0u8; 8];
                buf[..self.data.len() - byte].copy_from_slice(&self.data[byte..]);
                u64::from_le_bytes(buf)
            }
        } >> (self.pos % 8);
        self.pos += n as usize;
        Ok(word & ((1u64 << n) - 1))
    }

    fn vbr(&mut self, n: u32) -> Result<u64> {
        if !(2..=32).contains(&n) {
            return err("bad VBR width");
        }
        let hi = 1u64 << (n - 1);
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let chunk = self.read(n)?;
            if shift >= 64 {
                return err("VBR value too large");
            }
            value |= (chunk & (hi - 1)) << shift;
            if chunk & hi == 0 {
                return Ok(value);
            }
            shift += n - 1;
        }
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        if n > self.remaining() {
            return err("unexpected end of file");
        }
        self.pos += n;
        Ok(())
    }

    fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    fn align32(&mut self) {
        self.pos = (self.pos + 31) & !31;
    }
}
