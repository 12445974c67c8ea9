# Output in UTF-8 survives the trip through subunit ("ó" holds the byte 0xb3).
echo "señor, canción, ó"
