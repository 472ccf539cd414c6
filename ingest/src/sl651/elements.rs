//! SL 651-2014 elements (要素): what an identifier means, its unit, and how its bytes read.
//!
//! Every element is an identifier byte (or `FF xx` for an extended one) and a data-definition
//! byte whose high 5 bits are the number of data bytes and low 3 bits the number of decimals;
//! the data follow. Most values are BCD, one digit per nibble, absent when every byte is FF,
//! negative when an extra leading FF byte is counted in the length. The hourly report's
//! 5-minute series are binary (HEX): F4 is twelve 1-byte rainfall amounts in 0.1 mm, F5…FC
//! twelve 2-byte relative water levels in 0.01 m, one per 5 minutes of the last hour.
//! An identifier not in [`spec`] still reads by its data-definition byte as a BCD number;
//! the registry may bind it to a sensor of any scalar unit.

/// How an element's data bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A BCD number with the data-definition byte's decimals.
    Bcd,
    /// Twelve 5-minute rainfall amounts of the last hour, 1 byte each, 0.1 mm (FF: none).
    FiveMinuteRain,
    /// Twelve 5-minute relative water levels of the last hour, 2 bytes each, 0.01 m (FFFF: none).
    FiveMinuteLevel,
    /// A time step, BCD DDHHmm (days, hours, minutes).
    TimeStep,
    /// Bits or bytes that are not a measurement (status and alarms).
    Raw,
}

/// What riskwatch knows of one identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementSpec {
    /// Identifier (`0xFFxx` for an extended one).
    pub id: u16,
    /// Its name in the standard.
    pub name_zh: &'static str,
    /// In English.
    pub name: &'static str,
    /// The unit its values are in, as the registry spells it (`None`: not a measurement).
    pub unit: Option<&'static str>,
    /// How its bytes read.
    pub shape: Shape,
}

const fn e(
    id: u16,
    name_zh: &'static str,
    name: &'static str,
    unit: Option<&'static str>,
    shape: Shape,
) -> ElementSpec {
    ElementSpec { id, name_zh, name, unit, shape }
}

/// The elements of water level and rainfall reports that riskwatch reads with their units
/// (the table in docs/wire-format.md).
pub const TABLE: &[ElementSpec] = &[
    e(0x03, "瞬时水温", "instantaneous water temperature", Some("degC"), Shape::Bcd),
    e(0x04, "时间步长码", "time step", None, Shape::TimeStep),
    e(0x1A, "1小时时段降水量", "rainfall in the last hour", Some("mm"), Shape::Bcd),
    e(0x1F, "日降水量", "daily rainfall", Some("mm"), Shape::Bcd),
    e(0x20, "当前降水量", "current rainfall", Some("mm"), Shape::Bcd),
    e(0x26, "降水量累计值", "accumulated rainfall", Some("mm"), Shape::Bcd),
    e(0x38, "电源电压", "supply voltage", Some("V"), Shape::Bcd),
    e(0x39, "瞬时河道水位、潮位", "instantaneous river level / tide level", Some("m"), Shape::Bcd),
    e(0x3A, "库（闸、站）下水位", "downstream level of a reservoir, sluice or pumping station", Some("m"), Shape::Bcd),
    e(0x3B, "库（闸、站）上水位", "upstream (reservoir) level", Some("m"), Shape::Bcd),
    e(0x3C, "取（排）水口水位1", "intake/outlet water level 1", Some("m"), Shape::Bcd),
    e(0x3D, "取（排）水口水位2", "intake/outlet water level 2", Some("m"), Shape::Bcd),
    e(0x3E, "取（排）水口水位3", "intake/outlet water level 3", Some("m"), Shape::Bcd),
    e(0x3F, "取（排）水口水位4", "intake/outlet water level 4", Some("m"), Shape::Bcd),
    e(0x40, "取（排）水口水位5", "intake/outlet water level 5", Some("m"), Shape::Bcd),
    e(0x41, "取（排）水口水位6", "intake/outlet water level 6", Some("m"), Shape::Bcd),
    e(0x42, "取（排）水口水位7", "intake/outlet water level 7", Some("m"), Shape::Bcd),
    e(0x43, "取（排）水口水位8", "intake/outlet water level 8", Some("m"), Shape::Bcd),
    e(0x45, "遥测站状态及报警信息", "station status and alarms", None, Shape::Raw),
    e(0xF4, "1小时内每5分钟时段雨量", "5-minute rainfall of the last hour", Some("mm"), Shape::FiveMinuteRain),
    e(0xF5, "1小时内5分钟间隔相对水位1", "5-minute relative water level 1", Some("m"), Shape::FiveMinuteLevel),
    e(0xF6, "1小时内5分钟间隔相对水位2", "5-minute relative water level 2", Some("m"), Shape::FiveMinuteLevel),
    e(0xF7, "1小时内5分钟间隔相对水位3", "5-minute relative water level 3", Some("m"), Shape::FiveMinuteLevel),
    e(0xF8, "1小时内5分钟间隔相对水位4", "5-minute relative water level 4", Some("m"), Shape::FiveMinuteLevel),
    e(0xF9, "1小时内5分钟间隔相对水位5", "5-minute relative water level 5", Some("m"), Shape::FiveMinuteLevel),
    e(0xFA, "1小时内5分钟间隔相对水位6", "5-minute relative water level 6", Some("m"), Shape::FiveMinuteLevel),
    e(0xFB, "1小时内5分钟间隔相对水位7", "5-minute relative water level 7", Some("m"), Shape::FiveMinuteLevel),
    e(0xFC, "1小时内5分钟间隔相对水位8", "5-minute relative water level 8", Some("m"), Shape::FiveMinuteLevel),
];

/// What riskwatch knows of identifier `id`, if anything.
pub fn spec(id: u16) -> Option<&'static ElementSpec> {
    TABLE.iter().find(|s| s.id == id)
}

/// The identifier as the registry's `sl651.element` spells it: `"39"`, `"FF0A"`.
pub fn id_hex(id: u16) -> String {
    if id > 0xFF {
        format!("{id:04X}")
    } else {
        format!("{id:02X}")
    }
}

/// A BCD number of `data` with `decimals` decimals: `Ok(None)` when every byte is FF (no
/// value); negative with a leading FF byte; an error naming the first byte that is not BCD.
pub fn bcd_number(data: &[u8], decimals: u8) -> Result<Option<f64>, String> {
    if data.is_empty() {
        return Err("no data bytes".into());
    }
    if data.iter().all(|&b| b == 0xFF) {
        return Ok(None);
    }
    let (negative, digits) = match data {
        [0xFF, rest @ ..] if !rest.is_empty() => (true, rest),
        _ => (false, data),
    };
    let mut v = 0.0f64;
    for (i, &b) in digits.iter().enumerate() {
        let (hi, lo) = (b >> 4, b & 0x0F);
        if hi > 9 || lo > 9 {
            return Err(format!("data byte {} is {b:02X}, not two BCD digits", i + usize::from(negative)));
        }
        v = v * 100.0 + f64::from(hi * 10 + lo);
    }
    let v = v / 10f64.powi(i32::from(decimals));
    Ok(Some(if negative { -v } else { v }))
}

/// The BCD digits of a non-negative integer in `n` bytes (`None` if it does not fit).
pub fn bcd_bytes(mut v: u64, n: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; n];
    for b in out.iter_mut().rev() {
        let two = (v % 100) as u8;
        v /= 100;
        *b = ((two / 10) << 4) | (two % 10);
    }
    (v == 0).then_some(out)
}

/// A number as an element's data bytes: BCD with `decimals` decimals in `n` bytes, negative
/// values with a leading FF (n + 1 bytes); `None` if it does not fit or is not finite.
pub fn encode_number(value: f64, n: usize, decimals: u8) -> Option<Vec<u8>> {
    if !value.is_finite() {
        return None;
    }
    let scaled = (value.abs() * 10f64.powi(i32::from(decimals))).round();
    if scaled >= 1e18 {
        return None;
    }
    let digits = bcd_bytes(scaled as u64, n)?;
    Some(if value < 0.0 && scaled > 0.0 { [vec![0xFF], digits].concat() } else { digits })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_reads_digits_decimals_signs_and_absent_values() {
        assert_eq!(bcd_number(&[0x00, 0x02, 0x73, 0x45], 3).unwrap(), Some(27.345));
        assert_eq!(bcd_number(&[0x00, 0x12, 0x34], 1).unwrap(), Some(123.4));
        assert_eq!(bcd_number(&[0xFF, 0x00, 0x12, 0x50], 2).unwrap(), Some(-12.5));
        assert_eq!(bcd_number(&[0xFF, 0xFF, 0xFF], 1).unwrap(), None);
        let err = bcd_number(&[0x00, 0x1A], 0).unwrap_err();
        assert!(err.contains("data byte 1 is 1A"), "{err}");
        assert!(bcd_number(&[], 0).is_err());
        assert_eq!(encode_number(27.345, 4, 3), Some(vec![0x00, 0x02, 0x73, 0x45]));
        assert_eq!(encode_number(-1.5, 2, 1), Some(vec![0xFF, 0x00, 0x15]));
        assert_eq!(encode_number(1e9, 2, 0), None, "does not fit");
        assert_eq!(id_hex(0x39), "39");
        assert_eq!(id_hex(0xFF0A), "FF0A");
        assert_eq!(spec(0x39).unwrap().unit, Some("m"));
        assert_eq!(spec(0x26).unwrap().unit, Some("mm"));
        assert!(spec(0x99).is_none());
    }
}
