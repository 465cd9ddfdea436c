package shopgen

// category is one department of the emulated shops: the nouns it sells, the
// brands that make them, a price range and the specifications its products
// list. Nouns are lowercase so that a case-sensitive filter such as
// `filter set phone` matches them as well as a case-insensitive one.
type category struct {
	name     string
	code     string // three letters, for SKUs
	nouns    []string
	brands   []string
	minCents int
	maxCents int
	specs    []spec
}

type spec struct {
	key    string
	values []string
}

// series are the model lines that follow the noun in a name ("Samsung
// smartphone Ultra"); shared by every brand so a name stays short and a
// search for an existing name has a few hundred products to hit.
var series = []string{"Pro", "Air", "Max", "Lite", "Mini", "Ultra", "Plus", "One", "Neo", "Edge"}

var colors = []string{"black", "white", "silver", "graphite", "blue", "red", "green", "gold", "pink", "grey"}

var warranties = []string{"1 year", "2 years", "3 years"}

var features = []string{
	"built to last with a two-year warranty",
	"a best seller this season",
	"lightweight and easy to carry",
	"energy efficient and quiet",
	"designed for everyday use",
	"with free shipping and free returns",
	"rated 4.6 out of 5 by our customers",
	"made from recycled materials",
	"the upgraded model with longer battery life",
	"ideal as a gift",
}

var views = []string{"front view", "side view", "back view"}

var labels = []string{"new", "sale", "bestseller", "eco", "limited", "gift"}

var currencies = []string{"USD", "EUR", "GBP", "KRW", "RUB"}

var catalogue = []category{
	{
		name: "phones", code: "PHN",
		nouns:    []string{"phone", "smartphone", "phone case", "phone charger", "foldable phone"},
		brands:   []string{"Apple", "Samsung", "Google", "Xiaomi", "OnePlus", "Nokia", "Motorola"},
		minCents: 1999, maxCents: 149999,
		specs: []spec{
			{"storage", []string{"64 GB", "128 GB", "256 GB", "512 GB", "1 TB"}},
			{"screen", []string{"5.8 in", "6.1 in", "6.4 in", "6.7 in", "6.9 in"}},
		},
	},
	{
		name: "laptops", code: "LAP",
		nouns:    []string{"laptop", "notebook", "ultrabook", "gaming laptop", "laptop stand"},
		brands:   []string{"Lenovo", "Dell", "HP", "Apple", "Asus", "Acer", "Microsoft"},
		minCents: 2999, maxCents: 399999,
		specs: []spec{
			{"memory", []string{"8 GB", "16 GB", "32 GB", "64 GB"}},
			{"screen", []string{"13.3 in", "14 in", "15.6 in", "16 in", "17.3 in"}},
		},
	},
	{
		name: "audio", code: "AUD",
		nouns:    []string{"headphones", "earbuds", "speaker", "soundbar", "turntable"},
		brands:   []string{"Sony", "Bose", "JBL", "Sennheiser", "Marshall", "Bang & Olufsen"},
		minCents: 1499, maxCents: 89999,
		specs: []spec{
			{"connectivity", []string{"Bluetooth 5.3", "Bluetooth 5.0", "wired", "Wi-Fi"}},
			{"battery", []string{"8 h", "20 h", "30 h", "40 h"}},
		},
	},
	{
		name: "tv", code: "TVS",
		nouns:    []string{"television", "monitor", "projector", "streaming stick"},
		brands:   []string{"LG", "Samsung", "Sony", "Philips", "TCL", "Hisense"},
		minCents: 3999, maxCents: 499999,
		specs: []spec{
			{"diagonal", []string{"24 in", "32 in", "43 in", "55 in", "65 in", "77 in"}},
			{"resolution", []string{"1080p", "1440p", "4K", "8K"}},
		},
	},
	{
		name: "kitchen", code: "KIT",
		nouns:    []string{"coffee maker", "kettle", "blender", "toaster", "air fryer", "espresso machine"},
		brands:   []string{"Philips", "Bosch", "DeLonghi", "Tefal", "KitchenAid", "Smeg"},
		minCents: 1999, maxCents: 129999,
		specs: []spec{
			{"power", []string{"800 W", "1200 W", "1500 W", "2000 W", "2400 W"}},
			{"capacity", []string{"0.5 l", "1 l", "1.7 l", "2 l", "5 l"}},
		},
	},
	{
		name: "shoes", code: "SHO",
		nouns:    []string{"running shoes", "sneakers", "hiking boots", "sandals", "trail shoes"},
		brands:   []string{"Nike", "Adidas", "Puma", "Asics", "New Balance", "Salomon"},
		minCents: 2499, maxCents: 24999,
		specs: []spec{
			{"size", []string{"38", "39", "40", "41", "42", "43", "44", "45"}},
			{"material", []string{"mesh", "leather", "suede", "knit"}},
		},
	},
	{
		name: "cameras", code: "CAM",
		nouns:    []string{"camera", "mirrorless camera", "action camera", "lens", "tripod"},
		brands:   []string{"Canon", "Nikon", "GoPro", "Fujifilm", "Sony", "DJI"},
		minCents: 2999, maxCents: 349999,
		specs: []spec{
			{"sensor", []string{"APS-C", "full frame", "1 in", "micro four thirds"}},
			{"video", []string{"1080p", "4K 30fps", "4K 60fps", "8K"}},
		},
	},
	{
		name: "wearables", code: "WEA",
		nouns:    []string{"smartwatch", "fitness tracker", "watch strap", "smart ring"},
		brands:   []string{"Garmin", "Apple", "Fitbit", "Casio", "Samsung", "Huawei"},
		minCents: 1499, maxCents: 99999,
		specs: []spec{
			{"battery", []string{"1 day", "5 days", "14 days", "21 days"}},
			{"water resistance", []string{"3 ATM", "5 ATM", "10 ATM"}},
		},
	},
	{
		name: "home", code: "HOM",
		nouns:    []string{"vacuum cleaner", "robot vacuum", "air purifier", "desk lamp", "fan heater"},
		brands:   []string{"Dyson", "iRobot", "Xiaomi", "Philips", "Rowenta", "IKEA"},
		minCents: 1999, maxCents: 99999,
		specs: []spec{
			{"power", []string{"40 W", "300 W", "1200 W", "2000 W"}},
			{"noise", []string{"32 dB", "45 dB", "60 dB", "75 dB"}},
		},
	},
	{
		name: "toys", code: "TOY",
		nouns:    []string{"building set", "board game", "puzzle", "remote control car", "plush toy"},
		brands:   []string{"LEGO", "Hasbro", "Mattel", "Ravensburger", "Playmobil"},
		minCents: 499, maxCents: 49999,
		specs: []spec{
			{"age", []string{"3+", "6+", "8+", "12+", "18+"}},
			{"pieces", []string{"100", "500", "1000", "2500"}},
		},
	},
}
