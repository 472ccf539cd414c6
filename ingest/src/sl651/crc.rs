//! The SL 651-2014 check code: CRC-16 with the polynomial x¹⁶ + x¹⁵ + x² + 1 processed
//! least-significant bit first (reflected 0xA001), initial value 0xFFFF, no final XOR — the
//! CRC-16/MODBUS variant. The frame carries it high byte first.

/// The CRC of `bytes`.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_check_value_of_crc16_modbus() {
        // The catalogue check value: the CRC of the ASCII digits "123456789".
        assert_eq!(crc16(b"123456789"), 0x4B37);
        assert_eq!(crc16(&[]), 0xFFFF);
        assert_ne!(crc16(&[0x7E, 0x7E, 0x01]), crc16(&[0x7E, 0x7E, 0x02]));
    }
}
